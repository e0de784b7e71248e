"""Runs an :class:`~.runner.Experiment` in the reactor with a progress bar, then
prints the table and writes the files (the command's body, apart from parsing)."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import defer, task

from twisted_netapps.experiment import plot, results as results_module
from twisted_netapps.experiment.params import Parameters
from twisted_netapps.experiment.results import LABELS, RunResult
from twisted_netapps.experiment.runner import Experiment, parameters_record

TICK = 0.5


class Progress:
    """A tqdm bar in estimated seconds: each run advances it by its estimate,
    and in between, by the time spent (up to the run's estimate)."""

    def __init__(self, reactor, params: Parameters, enabled: bool) -> None:
        from tqdm import tqdm

        self.reactor = reactor
        self.params = params
        self.bar = tqdm(total=round(params.total_estimate()), unit="s", disable=not enabled, file=sys.stderr,
                        bar_format="{l_bar}{bar}| {elapsed} elapsed, ~{remaining} left")
        self.done = 0.0
        self.current = 0.0
        self.started = reactor.seconds()
        self.ticker = task.LoopingCall(self._tick)
        self.ticker.clock = reactor

    def start(self) -> None:
        self.ticker.start(TICK, now=False)

    def run_started(self, architecture: str, n: int, repeat: int) -> None:
        self.current = self.params.estimate(architecture, n)
        self.started = self.reactor.seconds()
        self.bar.set_description(f"{LABELS[architecture]} N={n} ({repeat}/{self.params.repeat})")

    def run_ended(self, result: RunResult) -> None:
        self.done += self.current
        self.current = 0.0
        self._show(self.done)
        if result.ratio < 1.0:
            self.bar.write(f"WARNING: {result.architecture} N={result.n}: measured {result.measured:.3f} s is below "
                           f"its bound {result.bound:.3f} s: the measurement is wrong")

    def _tick(self) -> None:
        self._show(self.done + min(self.reactor.seconds() - self.started, self.current * 0.98))

    def _show(self, position: float) -> None:
        self.bar.update(max(0, round(position) - self.bar.n))

    def close(self) -> None:
        if self.ticker.running:
            self.ticker.stop()
        self.bar.close()


def finish(results: list[RunResult], params: Parameters, out: Path) -> list[Path]:
    """The table on stdout; results.csv/.json and the plot in *out*."""
    print(results_module.table(results))
    paths = results_module.write(results, parameters_record(params), out)
    paths += plot.plot(results, params, out)
    below = [r for r in results if r.ratio < 1.0]
    if below:
        print(f"{len(below)} run(s) measured below their bound: the measurement is wrong", file=sys.stderr)
    print("wrote " + ", ".join(str(path) for path in paths))
    return paths


def run_in_reactor(params: Parameters, out: Path, *, progress: bool = True) -> int:
    from twisted.internet import reactor

    experiment = Experiment(reactor, params)
    bar = Progress(reactor, params, progress)
    outcome = {"status": 1}

    async def main() -> None:
        bar.start()
        try:
            found = await experiment.run(bar.run_started, bar.run_ended)
        finally:
            bar.close()
        finish(found, params, out)
        outcome["status"] = 0

    def failed(failure) -> None:
        print(f"netapps experiment: {failure.getErrorMessage() or failure.type.__name__}", file=sys.stderr)

    def stop(_) -> None:
        if reactor.running:
            reactor.stop()

    def interrupted():
        # Ctrl-C or SIGTERM: no peer or daemon is left behind.
        return defer.ensureDeferred(experiment.close())

    reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addErrback(failed).addBoth(stop))
    reactor.run()
    return outcome["status"]
