"""Stand-ins for the frame pieces that are not on main yet (deadlines,
periodic, connections). Each name is taken from the frame when it exists;
the fallbacks are minimal and go away once the frame is merged (the
integrator's note: delete this module then, importing from the frame)."""

from __future__ import annotations

import dataclasses

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger


log = Logger(namespace="netapps.web")

try:
    from twisted_netapps.deadlines import Deadline
except ImportError:  # frame not merged yet

    class Deadline:  # type: ignore[no-redef]
        def __init__(self, clock, seconds: float, on_expire) -> None:
            self.clock, self.seconds, self.on_expire = clock, seconds, on_expire
            self._call = None

        @property
        def active(self) -> bool:
            return self._call is not None and self._call.active()

        def start(self) -> None:
            if not self.active:
                self._call = self.clock.callLater(self.seconds, self._expired)

        def restart(self) -> None:
            self.cancel()
            self.start()

        def cancel(self) -> None:
            if self.active:
                self._call.cancel()
            self._call = None

        def _expired(self) -> None:
            self._call = None
            self.on_expire()


try:
    from twisted_netapps.periodic import PeriodicTask
except ImportError:

    class PeriodicTask(service.Service):  # type: ignore[no-redef]
        def __init__(self, name: str, interval: float, function, clock) -> None:
            self.name, self.interval, self.function = name, interval, function
            self._loop = task.LoopingCall(self._run)
            self._loop.clock = clock

        def _run(self):
            try:
                self.function()
            except OSError as e:
                log.error("{task} failed: {error}", task=self.name, error=e)

        def startService(self) -> None:
            service.Service.startService(self)
            self._loop.start(self.interval, now=False)

        def stopService(self):
            service.Service.stopService(self)
            if self._loop.running:
                self._loop.stop()


try:
    from twisted_netapps.connections import StreamSettings
except ImportError:

    @dataclasses.dataclass(frozen=True)
    class StreamSettings:  # type: ignore[no-redef]
        """No fields until the frame's connection caps exist (a setting that
        did nothing would mislead)."""
