"""Twisted adapter for the FTP core: the control connection, logins, file work, transfers.

:class:`FtpControl` feeds received bytes to :class:`~twisted_netapps.ftp.session.FtpSession`
and carries out its events: replies are coalesced into one write per
read, logins go through ``twisted.cred`` (the factory's ``login``), file
operations run in the disk pool (the factory's ``run_disk``), data
connections are :mod:`twisted_netapps.ftp.data`'s, transfers
:mod:`twisted_netapps.ftp.transfer`'s. The control connection's idle timer
is off while a transfer runs (a long download is not idleness); the data
connection has its own. Two deadlines bound what an idle timer cannot: a
command line must be complete ``command_timeout`` seconds after its first
byte (no slowloris trickle), and the login must be done ``login_timeout``
seconds after the connection opened.
"""


from __future__ import annotations

import socket

from twisted.cred import credentials, error as cred_error
from twisted.cred.portal import IRealm
from twisted.internet import error, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import Interface, implementer

from twisted_netapps.addresses import host_of
from twisted_netapps.deadlines import Deadline
from twisted_netapps.ftp import events as ev
from twisted_netapps.ftp.data import DataChannel, PortPicker
from twisted_netapps.ftp.filesystem import FileError, JailedFilesystem
from twisted_netapps.ftp.session import FtpSession, SessionPolicy
from twisted_netapps.ftp.transfer import Transfer, as_file_error
from twisted_netapps.observe import NULL_RECENT
from twisted_netapps.logins import LoginRefused
from twisted_netapps.ratelimit import TokenBucket

log = Logger(namespace="netapps.ftp")

TOO_MANY_CONNECTIONS = b"421 Too many connections from your address or to this server; try again later.\r\n"


class IFtpAccount(Interface):
    """Avatar interface: one login's jailed file system."""


@implementer(IFtpAccount)
class FtpAccount:
    def __init__(self, name: str, fs: JailedFilesystem) -> None:
        self.name = name
        self.fs = fs


# Look-ups of one path (a stat or two, a realpath) are answered on the reactor
# thread: the hop to a pool thread and back costs more than the work (measured:
# the hops were a third of the server's CPU per session). Directory scans
# (listings) and changes to directories (mkdir, rmdir, unlink, rename) go to
# the disk pool.
INLINE_OPS = frozenset(("cwd", "size", "mdtm", "mlst", "rnfr"))


def _file_operation(fs: JailedFilesystem, request: ev.FileRequest):
    op, path = request.op, request.path
    if op == "cwd":
        return fs.change_dir(path)
    if op == "mkd":
        return fs.make_dir(path)
    if op == "rmd":
        return fs.remove_dir(path)
    if op == "dele":
        return fs.delete(path)
    if op == "rnfr":
        return fs.check_exists(path)
    if op == "rnto":
        return fs.rename(path, request.target)
    if op == "size":
        return fs.file_size(path)
    if op == "mdtm":
        return fs.modify_time(path)
    if op == "mlst":
        return fs.facts(path, request.facts)
    if op == "stat":
        return fs.status_lines(path)
    raise ValueError(f"unknown file operation {op!r}")


class FtpControl(protocol.Protocol, TimeoutMixin):
    def __init__(self, factory: "FtpFactory") -> None:
        self.factory = factory
        self.callLater = factory.reactor.callLater
        self._out: list[bytes] = []
        self._closing = False
        self.account: FtpAccount | None = None
        self.transfer: Transfer | None = None
        self.transfer_started_at = 0.0
        self.tls_active = False
        self._commands_counted = 0

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        f = self.factory
        transport = self.transport
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            # ABOR arrives behind a Telnet Synch sent as TCP urgent data; keep
            # that byte in the stream, or the line loses its end.
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        peer, local = transport.getPeer(), transport.getHost()
        self.peer_host = host_of(peer) or ""
        self.peer = f"{self.peer_host}:{getattr(peer, 'port', '')}"
        local_host = getattr(local, "host", "127.0.0.1")
        self.session = FtpSession(SessionPolicy(
            peer_host=self.peer_host,
            ipv6=":" in local_host and not local_host.startswith("::ffff:"),
            anonymous=f.settings.anonymous,
            tls_available=f.tls_options is not None,
            max_login_failures=f.settings.max_login_failures,
            max_line=f.settings.max_line,
        ))
        self.announce_host = f.settings.passive_address or local_host
        self.channel = DataChannel(f.reactor, local_host=local_host, peer_host=self.peer_host,
                                   picker=f.port_picker, timeout=f.settings.data_timeout,
                                   tls_options=self.data_tls_options)
        f.sessions.add(self)
        self.setTimeout(f.settings.idle_timeout)
        clock = f.reactor
        self.command_deadline = Deadline(clock, f.settings.command_timeout, self._command_too_slow)
        self.login_deadline = Deadline(clock, f.settings.login_timeout, self._login_too_slow)
        self.login_deadline.start()
        self.resume(self.session.greeting())

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        self.command_deadline.cancel()
        self.login_deadline.cancel()
        self.factory.sessions.discard(self)
        if self.transfer is not None:
            self.transfer.stop()
            self.transfer = None
        self.channel.close()

    def timeoutConnection(self) -> None:
        log.info("ftp: {peer} idle for {t}s, closing", peer=self.peer, t=self.factory.settings.idle_timeout)
        self.resume(self.session.idle_timeout())

    def _command_too_slow(self) -> None:
        log.info("ftp: {peer}: command line not complete after {t}s, closing", peer=self.peer,
                 t=self.factory.settings.command_timeout)
        self.resume(self.session.close_with_timeout("Command line not completed in time"))

    def _login_too_slow(self) -> None:
        if self.account is None:
            log.info("ftp: {peer}: not logged in after {t}s, closing", peer=self.peer,
                     t=self.factory.settings.login_timeout)
            self.resume(self.session.close_with_timeout("Login not completed in time"))

    def shutdown(self) -> None:
        """The service is stopping: 421 and close (RFC 959's 421 for "service closing")."""
        self.resume(self.session.shutdown())

    def data_tls_options(self):
        return self.factory.data_tls_options if self.session.protect else None

    # ------------------------------------------------------------ input / output

    def dataReceived(self, data: bytes) -> None:
        if self.transfer is None:
            self.resetTimeout()
        self.factory.stats.incr("bytes_in", len(data))
        self.resume(self.session.receive_data(data))
        if self.session.buffer.is_empty():
            self.command_deadline.cancel()
        else:  # part of a line waits for its end: counted from its first byte
            self.command_deadline.start()

    def resume(self, events: list) -> None:
        """Carry out *events* from the core, then send every reply queued."""
        for event in events:
            kind = type(event)
            if kind is ev.Send:
                self._out.append(event.data)
                if event.data[:1] in (b"4", b"5"):
                    self.factory.stats.incr("errors")
            elif kind is ev.FileRequest:
                self._file_request(event)
            elif kind is ev.StartTransfer:
                self._start_transfer(event)
            elif kind is ev.OpenPassive:
                self._open_passive()
            elif kind is ev.UseActive:
                self.channel.use_active(event.host, event.port)
            elif kind is ev.CloseData:
                self.channel.close()
            elif kind is ev.AbortTransfer:
                if self.transfer is not None:
                    self.transfer.abort()
            elif kind is ev.CheckLogin:
                self._login(event)
            elif kind is ev.StartTls:
                self._flush()
                self.transport.startTLS(self.factory.tls_options)
                self.tls_active = True
            elif kind is ev.Close:
                self._flush()
                if not self._closing:
                    self._closing = True
                    self.transport.loseConnection()
        self._flush()

    def _flush(self) -> None:
        handled = self.session.commands - self._commands_counted
        if handled:
            self._commands_counted = self.session.commands
            self.factory.stats.incr("requests", handled)
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.factory.stats.incr("bytes_out", len(data))
            self.transport.write(data)

    # ------------------------------------------------------------ login

    def _login(self, event: ev.CheckLogin) -> None:
        creds = credentials.Anonymous() if event.anonymous else credentials.UsernamePassword(
            event.user.encode("utf-8", "surrogateescape"), event.password.encode("utf-8", "surrogateescape"))
        f = self.factory
        d = f.logins.login(f.portal, creds, self.peer_host, "anonymous" if event.anonymous else event.user,
                           IFtpAccount, failure_delay=f.settings.login_failure_delay)
        d.addCallbacks(self._logged_in, self._login_failed, errbackArgs=(event.user,))

    def _logged_in(self, result) -> None:
        _iface, account, _logout = result
        if not self.transport.connected:
            return
        self.account = account
        self.login_deadline.cancel()
        self.factory.stats.incr("logins")
        self.factory.recent.record("login", peer=self.peer, user=account.name)
        log.info("ftp: {peer}: {user} logged in", peer=self.peer, user=account.name)
        self.resume(self.session.login_done(account.fs.access.writable))

    def _login_failed(self, failure, user: str) -> None:
        if not self.transport.connected:
            return
        if failure.check(LoginRefused):
            self.resume(self.session.login_refused())
            return
        if not failure.check(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials):
            # A bug or a broken home directory, not a wrong password: logged once, 530 to the client.
            log.failure("ftp: {peer}: login of {user} failed unexpectedly", failure, peer=self.peer, user=user)
        self.factory.stats.incr("login_failures")
        log.info("ftp: {peer}: failed login for {user}", peer=self.peer, user=user)
        self.resume(self.session.login_failed())

    # ------------------------------------------------------------ file system

    def _file_request(self, request: ev.FileRequest) -> None:
        if request.op in INLINE_OPS:
            try:
                result = _file_operation(self.account.fs, request)
            except FileError as e:
                self.resume(self.session.file_failed(e))
            else:
                self.resume(self.session.file_done(result))
            return
        d = self.factory.run_disk(_file_operation, self.account.fs, request)
        d.addCallbacks(self._file_done, self._file_failed)

    def _file_done(self, result) -> None:
        if self.transport.connected and not self._closing:
            self.resume(self.session.file_done(result))

    def _file_failed(self, failure) -> None:
        error = as_file_error(failure, "a file operation")
        if self.transport.connected and not self._closing:
            self.resume(self.session.file_failed(error))

    # ------------------------------------------------------------ data connections

    def _open_passive(self) -> None:
        try:
            port = self.channel.listen()
        except error.CannotListenError as e:
            log.warn("ftp: no passive port free: {error}", error=e)
            self.resume(self.session.passive_failed())
            return
        self.resume(self.session.passive_ready(self.announce_host, port))

    def _start_transfer(self, request: ev.StartTransfer) -> None:
        self.setTimeout(None)
        self.transfer = Transfer(self, request, self.account.fs)
        self.transfer_started_at = self.factory.reactor.seconds()
        self.transfer.start()

    def transfer_ended(self, transfer: Transfer, events: list) -> None:
        if transfer is not self.transfer:
            return
        elapsed = self.factory.reactor.seconds() - self.transfer_started_at
        self.factory.recent.record(
            "transfer", peer=self.peer, user=self.account.name, command=transfer.kind, path=transfer.request.path,
            bytes=transfer.bytes, seconds=round(elapsed, 3),
            outcome="complete" if transfer.finished else "not complete (aborted or failed)",
        )
        self.transfer = None
        self.channel.transfer_finished()
        if self.transport.connected and not self._closing:
            self.setTimeout(self.factory.settings.idle_timeout)
            self.resume(events)


class FtpFactory(protocol.Factory):
    noisy = False

    def __init__(self, *, settings, stats, reactor, portal, logins, run_disk, tls_options=None,
                 data_tls_options=None, recent=NULL_RECENT) -> None:
        self.settings = settings
        self.recent = recent  # the status page's live events
        self.stats = stats
        self.reactor = reactor
        self.portal = portal
        self.logins = logins  # the frame's LoginGuard: delays and per-address budgets
        self.run_disk = run_disk  # (f, *args) -> Deferred, in the disk pool
        self.tls_options = tls_options
        self.data_tls_options = data_tls_options or tls_options
        low, high = settings.passive_ports or (0, 0)
        self.port_picker = PortPicker(low, high)
        self.sessions: set[FtpControl] = set()
        # ftp.upload_rate: one bucket for every data connection's downloads
        self.upload_buckets = [TokenBucket(settings.upload_rate, now=reactor.seconds(), fair=True)] if settings.upload_rate else []

    def buildProtocol(self, addr):
        return FtpControl(self)

    def sessions_view(self) -> list[dict]:
        """The open sessions, for the status page."""
        now = self.reactor.seconds()
        rows = []
        for control in sorted(self.sessions, key=lambda c: c.peer):
            transfer = control.transfer
            rows.append({
                "peer": control.peer, "user": control.account.name if control.account else "(not logged in)",
                "tls": control.tls_active, "directory": control.session.cwd if control.account else "",
                "transfer": f"{transfer.kind} {transfer.request.path}: {transfer.bytes} bytes, "
                            f"{now - control.transfer_started_at:.1f}s" if transfer is not None else "",
            })
        return rows

    def shutdown(self) -> None:
        """421 to every session (the service is stopping)."""
        for control in list(self.sessions):
            control.shutdown()
