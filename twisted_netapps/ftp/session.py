"""The FTP control connection as a sans-I/O state machine (RFC 959 and extensions).

:class:`FtpSession` takes the bytes the client sent and returns events
(:mod:`twisted_netapps.ftp.events`): replies to send, and requests for work
(a login, a passive listener, a file operation, a transfer) whose results
come back through explicit methods. It never touches a socket or the disk.

What it guarantees, where stock ``twisted.protocols.ftp`` did not:

- commands keep being processed while a PASV/EPSV listener waits for its
  data connection, and a data connection that never comes ends that one
  transfer with 425 (replies never shift);
- during a transfer ABOR and STAT are answered at once (ABOR: 426 then
  226), other commands wait their turn in order;
- every line gets exactly one reply: unknown or malformed commands 500/501,
  out of order 503, before login 530, over-long lines 500, bytes that are
  not UTF-8 in a name are the name's bytes (never a silent drop);
- NLST without an argument lists the current directory; RNFR on a missing
  file and SIZE on a directory are 550; PORT/EPRT must name the control
  connection's peer (no FTP bounce, RFC 2577).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from twisted_netapps.addresses import same_host
from twisted_netapps.ftp import commands, paths
from twisted_netapps.ftp.commands import CommandError
from twisted_netapps.ftp.events import (
    AbortTransfer,
    CheckLogin,
    Close,
    CloseData,
    FileRequest,
    OpenPassive,
    Send,
    StartTls,
    StartTransfer,
    UseActive,
)
from twisted_netapps.ftp.filesystem import BAD_OFFSET, DENIED, IO, NO_SPACE, FileError
from twisted_netapps.ftp.listing import MLST_FACTS
from twisted_netapps.ftp.replies import (
    extended_passive_reply,
    multiline,
    passive_reply,
    quote_path,
    reply,
)
from twisted_netapps.sansio import OVERLONG, LineBuffer, StateMachine

ANONYMOUS_USERS = frozenset(("anonymous", "ftp"))
MAX_QUEUED_LINES = 64  # commands waiting behind a transfer; more is abuse

# Why a transfer ended without 226 (see FtpSession.transfer_failed).
NO_CONNECTION = "no connection"
ABORTED = "aborted"
CONNECTION_LOST = "connection lost"
TIMED_OUT = "timed out"
TLS_FAILED = "tls failed"

_TRANSFER_FAILURES = {
    NO_CONNECTION: (425, "Cannot open data connection."),
    ABORTED: (426, "Connection closed; transfer aborted."),
    CONNECTION_LOST: (426, "Data connection lost; transfer aborted."),
    TIMED_OUT: (426, "Data connection idle too long; transfer aborted."),
    TLS_FAILED: (522, "TLS negotiation on the data connection failed."),
}

HELP_COMMANDS = (
    "ABOR ACCT ALLO APPE AUTH CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD  MLSD MLST",
    "MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD  QUIT REST RETR RMD  RNFR RNTO",
    "SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD",
)


class Phase(enum.Enum):
    AWAIT_USER = "waiting for USER"
    AWAIT_PASS = "waiting for PASS"
    LOGGING_IN = "checking the password"
    READY = "logged in"
    BUSY = "waiting for a file operation or a listener"
    TRANSFER = "transferring"
    CLOSED = "closed"


# Allowed transitions, as data, checked by sansio.StateMachine.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.AWAIT_USER: frozenset({Phase.AWAIT_PASS, Phase.CLOSED}),
    Phase.AWAIT_PASS: frozenset({Phase.AWAIT_PASS, Phase.AWAIT_USER, Phase.LOGGING_IN, Phase.CLOSED}),
    Phase.LOGGING_IN: frozenset({Phase.READY, Phase.AWAIT_USER, Phase.CLOSED}),
    Phase.READY: frozenset({Phase.BUSY, Phase.TRANSFER, Phase.CLOSED}),
    Phase.BUSY: frozenset({Phase.READY, Phase.CLOSED}),
    Phase.TRANSFER: frozenset({Phase.READY, Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


@dataclass(frozen=True)
class SessionPolicy:
    """What one session may offer; set by the adapter per connection."""

    peer_host: str  # the control connection's client address
    ipv6: bool = False  # the control connection is IPv6 (no PASV/PORT)
    anonymous: bool = True
    tls_available: bool = False
    max_login_failures: int = 3
    max_line: int = 4096
    greeting: str = "twisted-netapps FTP server ready."


class FtpSession:
    """One control connection. Feed :meth:`receive_data`; act on the events."""

    def __init__(self, policy: SessionPolicy) -> None:
        self.policy = policy
        self.machine = StateMachine(Phase.AWAIT_USER, TRANSITIONS)
        self.buffer = LineBuffer(policy.max_line)
        self.queued: deque = deque()  # lines read behind a transfer
        self.user: str | None = None
        self.anonymous = False
        self.writable = False
        self.cwd = "/"
        self.ascii = True  # RFC 959: TYPE A until told otherwise
        self.rest = 0
        self.rename_from: str | None = None
        self.data_mode: str | None = None  # None, "passive" or "active"
        self.epsv_all = False
        self.tls = False
        self.pbsz = False
        self.protect = False  # PROT P: data connections under TLS
        self.login_failures = 0
        self.mlst_facts: tuple = MLST_FACTS
        self._pending: tuple | None = None  # (verb, detail) of the outstanding FileRequest/OpenPassive
        self._aborting = False
        self._transfer_kind = ""
        self.commands = 0  # command lines handled so far (the adapter's "requests" counter)

    @property
    def phase(self) -> Phase:
        return self.machine.state

    # ------------------------------------------------------------ entry points

    def greeting(self) -> list:
        return [Send(reply(220, self.policy.greeting))]

    def receive_data(self, data: bytes) -> list:
        if self.phase is Phase.CLOSED:
            return []
        self.buffer.feed(data)
        return self._process()

    def receive_eof(self) -> list:
        """The client closed the control connection: abort what runs, then close."""
        events: list = [AbortTransfer()] if self.phase is Phase.TRANSFER else []
        self._move(Phase.CLOSED)
        return events + [Close()]

    def idle_timeout(self) -> list:
        return self._close_with(421, "Idle timeout: closing control connection.")

    def close_with_timeout(self, text: str) -> list:
        """A deadline passed (a command line or the login took too long)."""
        return self._close_with(421, f"{text}: closing control connection.")

    def shutdown(self) -> list:
        return self._close_with(421, "Service not available, closing control connection (server shutting down).")

    @property
    def waiting(self) -> bool:
        """True while a request is outstanding (no new command is started)."""
        return self.phase in (Phase.LOGGING_IN, Phase.BUSY)

    # ------------------------------------------------------------ results of work

    def login_done(self, writable: bool) -> list:
        self._move(Phase.READY)
        self.writable = writable
        self.cwd = "/"
        self.login_failures = 0
        text = "Anonymous access granted, restrictions apply." if self.anonymous else f"User {self.user} logged in."
        return [Send(reply(230, text))] + self._process()

    def login_failed(self) -> list:
        self.login_failures += 1
        self.user = None
        self._move(Phase.AWAIT_USER)
        if self.login_failures >= self.policy.max_login_failures:
            return self._close_with(421, "Too many failed logins, closing control connection.")
        return [Send(reply(530, "Login incorrect."))] + self._process()

    def login_refused(self) -> list:
        """The address is over its failure budget: a temporary refusal, and close."""
        return self._close_with(421, "Too many failed logins from your address; try again later.")

    def passive_ready(self, host: str, port: int) -> list:
        verb = self._finish_pending()
        self.data_mode = "passive"
        data = extended_passive_reply(port) if verb == "EPSV" else passive_reply(host, port)
        return [Send(data)] + self._process()

    def passive_failed(self) -> list:
        self._finish_pending()
        self.data_mode = None
        return [Send(reply(425, "Cannot open a passive data port, try again."))] + self._process()

    def file_done(self, result=None) -> list:
        verb, detail = self._pending
        self._finish_pending()
        return [Send(self._file_reply(verb, detail, result))] + self._process()

    def file_failed(self, error: FileError) -> list:
        if self.phase is Phase.TRANSFER:  # the file to transfer could not be opened
            return self.transfer_failed("", error)
        verb = self._finish_pending()
        return [Send(reply(self._error_code(verb, error), error.text))] + self._process()

    def transfer_started(self, connected: bool, name: str = "") -> list:
        """The file is open: 125 on an open data connection, 150 when it is being opened."""
        what = {"list": "directory listing", "nlst": "name list", "mlsd": "directory listing"}.get(self._transfer_kind)
        if self._transfer_kind == "stou":
            text = f"FILE: {name}"  # RFC 1123 4.1.2.9
        elif what:
            text = f"Here comes the {what}."
        else:
            text = f"Opening {'ASCII' if self.ascii else 'BINARY'} mode data connection for {name}."
        return [Send(reply(125 if connected else 150, text))]

    def transfer_done(self) -> list:
        self._end_transfer()
        aborted, self._aborting = self._aborting, False
        text = "Transfer complete."
        if aborted:  # ABOR raced with the last byte: the transfer did complete
            text = "Transfer complete; ABOR had nothing left to abort."
        return [Send(reply(226, text))] + self._process()

    def transfer_failed(self, reason: str, error: FileError | None = None) -> list:
        self._end_transfer()
        aborted, self._aborting = self._aborting, False
        if error is not None:
            out = [Send(reply(self._error_code(self._transfer_kind.upper(), error), error.text))]
        else:
            code, text = _TRANSFER_FAILURES[reason]
            out = [Send(reply(code, text))]
        if aborted:
            out.append(Send(reply(226, "ABOR command successful.")))
        return out + self._process()

    # ------------------------------------------------------------ internals

    def _move(self, phase: Phase) -> None:
        self.machine.move(phase)

    def _close_with(self, code: int, text: str) -> list:
        events: list = [AbortTransfer()] if self.phase is Phase.TRANSFER else []
        if self.phase is Phase.CLOSED:
            return []
        self._move(Phase.CLOSED)
        return events + [Send(reply(code, text)), Close()]

    def _finish_pending(self) -> str:
        verb = self._pending[0] if self._pending else ""
        self._pending = None
        if self.phase is Phase.BUSY:
            self._move(Phase.READY)
        return verb

    def _end_transfer(self) -> None:
        self._move(Phase.READY)
        self.data_mode = None  # every transfer needs a new PASV/EPSV/PORT/EPRT
        self._transfer_kind = ""

    def _next_line(self):
        if self.phase is not Phase.TRANSFER and self.queued:
            return self.queued.popleft()
        return self.buffer.next_line()

    def _process(self) -> list:
        events: list = []
        while self.phase is not Phase.CLOSED and not self.waiting:
            line = self._next_line()
            if line is None:
                break
            if line is OVERLONG:
                events.append(Send(reply(500, "Command line too long.")))
                continue
            try:
                command = commands.parse_command(line)
            except CommandError as e:
                events.append(Send(reply(e.code, e.text)))
                continue
            if self.phase is Phase.TRANSFER and command.verb not in ("ABOR", "STAT"):
                if len(self.queued) >= MAX_QUEUED_LINES:
                    events += self._close_with(421, "Too many commands queued behind a transfer.")
                    break
                self.queued.append(line)
                continue
            self.commands += 1
            events += self._dispatch(command)
        return events

    def _dispatch(self, command: commands.Command) -> list:
        verb = _ALIASES.get(command.verb, command.verb)
        handler = _HANDLERS.get(verb)
        if handler is None:
            return [Send(reply(502 if verb in _NOT_IMPLEMENTED else 500, f"{command.verb} not understood."))]
        method, needs_login = handler
        if needs_login and self.phase not in (Phase.READY, Phase.TRANSFER):
            return [Send(reply(530, "Please log in with USER and PASS."))]
        rename_from, self.rename_from = self.rename_from, None  # RNTO must follow RNFR at once
        try:
            if verb == "RNTO":
                return self._rnto(command.arg, rename_from)
            return method(self, command.arg)
        except CommandError as e:
            return [Send(reply(e.code, e.text))]

    def _path(self, arg: str, *, required: bool = True) -> str:
        if not arg:
            if required:
                raise CommandError(501, "Syntax error: a path is required.")
            return self.cwd
        return paths.normalize(self.cwd, arg)

    def _request(self, verb: str, op: str, path: str, target: str = "", facts: tuple = ()) -> list:
        self._move(Phase.BUSY)
        self._pending = (verb, path)
        return [FileRequest(op, path, target, facts)]

    def _error_code(self, verb: str, error: FileError) -> int:
        if error.kind == NO_SPACE:
            return 452
        if error.kind == BAD_OFFSET:
            return 554
        if error.kind == IO:
            return 451
        if error.kind == DENIED and verb in ("STOR", "STOU", "APPE", "MKD", "RNTO"):
            return 553
        return 550

    def _file_reply(self, verb: str, path: str, result) -> bytes:
        if verb == "CWD":
            self.cwd = path
            return reply(250, f"Directory changed to {path}.")
        if verb == "MKD":
            return reply(257, f"{quote_path(path)} created.")
        if verb == "RNFR":
            self.rename_from = path
            return reply(350, "Ready for RNTO.")
        if verb == "SIZE":
            return reply(213, str(result))
        if verb == "MDTM":
            return reply(213, result)
        if verb == "MLST":
            return multiline(250, f"Listing {path}", [result], "End.")
        if verb == "STAT":
            return multiline(213, f"Status of {path}:", result, "End of status.")
        return reply(250, {"RMD": "Directory removed.", "DELE": "File deleted.", "RNTO": "Rename successful."}[verb])

    # ------------------------------------------------------------ login

    def _user(self, arg: str) -> list:
        if self.phase in (Phase.READY, Phase.TRANSFER):
            return [Send(reply(503, "Already logged in."))]
        name = arg.strip()
        if not name:
            return [Send(reply(501, "USER requires a user name."))]
        anonymous = name.lower() in ANONYMOUS_USERS
        if anonymous and not self.policy.anonymous:
            return [Send(reply(530, "Anonymous logins are not allowed here."))]
        self.user, self.anonymous = name, anonymous
        self._move(Phase.AWAIT_PASS)
        if anonymous:
            return [Send(reply(331, "Anonymous login ok, send your e-mail address as password."))]
        return [Send(reply(331, f"Password required for {name}."))]

    def _pass(self, arg: str) -> list:
        if self.phase in (Phase.READY, Phase.TRANSFER):
            return [Send(reply(503, "Already logged in."))]
        if self.phase is not Phase.AWAIT_PASS:
            return [Send(reply(503, "Login with USER first."))]
        self._move(Phase.LOGGING_IN)
        return [CheckLogin(self.user, arg, self.anonymous)]

    def _acct(self, arg: str) -> list:
        return [Send(reply(502, "ACCT not implemented: no accounts needed."))]

    def _quit(self, arg: str) -> list:
        self._move(Phase.CLOSED)
        return [Send(reply(221, "Goodbye.")), Close()]

    # ------------------------------------------------------------ TLS (RFC 4217)

    def _auth(self, arg: str) -> list:
        if not self.policy.tls_available:
            return [Send(reply(502, "AUTH not available: TLS is not configured."))]
        if self.tls:
            return [Send(reply(503, "TLS is already active."))]
        if arg.strip().upper() not in ("TLS", "TLS-C", "SSL", "TLS-P"):
            return [Send(reply(504, "AUTH mechanism not supported; use AUTH TLS."))]
        self.tls = True
        return [Send(reply(234, "AUTH TLS successful.")), StartTls()]

    def _pbsz(self, arg: str) -> list:
        if not self.tls:
            return [Send(reply(503, "PBSZ requires AUTH TLS first."))]
        if not arg.strip().isdigit():
            return [Send(reply(501, "PBSZ requires a number."))]
        self.pbsz = True
        return [Send(reply(200, "PBSZ=0"))]

    def _prot(self, arg: str) -> list:
        if not self.pbsz:
            return [Send(reply(503, "PROT requires PBSZ first."))]
        level = arg.strip().upper()
        if level in ("C", "P"):
            self.protect = level == "P"
            return [Send(reply(200, f"Protection level set to {level}."))]
        if level in ("S", "E"):
            return [Send(reply(536, f"Protection level {level} not supported."))]
        return [Send(reply(504, "PROT accepts C or P."))]

    # ------------------------------------------------------------ information

    def _feat(self, arg: str) -> list:
        features = ["EPRT", "EPSV", "MDTM", "MLST " + "".join(f"{f}*;" for f in MLST_FACTS),
                    "REST STREAM", "SIZE", "TVFS", "UTF8"]
        if self.policy.tls_available:
            features += ["AUTH TLS", "PBSZ", "PROT"]
        return [Send(multiline(211, "Features:", sorted(features), "End"))]

    def _opts(self, arg: str) -> list:
        option, _, value = arg.strip().partition(" ")
        option = option.upper()
        if option == "UTF8":
            if value.strip().upper() in ("ON", ""):
                return [Send(reply(200, "Always in UTF8 mode."))]
            return [Send(reply(504, "UTF8 cannot be switched off."))]
        if option == "MLST":
            wanted = [f.lower() for f in value.split(";") if f]
            self.mlst_facts = tuple(f for f in MLST_FACTS if f in wanted)
            return [Send(reply(200, "MLST OPTS " + "".join(f"{f};" for f in self.mlst_facts)))]
        return [Send(reply(501, f"Option {option or '(none)'} not understood."))]

    def _syst(self, arg: str) -> list:
        return [Send(reply(215, "UNIX Type: L8"))]

    def _help(self, arg: str) -> list:
        if arg.strip():
            verb = arg.strip().upper()
            if verb in _HANDLERS or verb in _ALIASES:
                return [Send(reply(214, f"{verb} is understood."))]
            return [Send(reply(502, f"{verb} is not understood."))]
        return [Send(multiline(214, "The following commands are recognized:", list(HELP_COMMANDS), "Help OK."))]

    def _noop(self, arg: str) -> list:
        return [Send(reply(200, "NOOP ok."))]

    def _stat(self, arg: str) -> list:
        if arg.strip():
            if self.phase is not Phase.READY:
                return [Send(reply(530 if self.phase is not Phase.TRANSFER else 503,
                                   "Please log in with USER and PASS." if self.phase is not Phase.TRANSFER
                                   else "STAT with a path waits until the transfer has ended."))]
            return self._request("STAT", "stat", self._path(commands.split_list_arg(arg)[1], required=False))
        lines = [f"Connected from {self.policy.peer_host}",
                 f"Logged in as {self.user}" if self.phase in (Phase.READY, Phase.TRANSFER) else "Not logged in",
                 f"TYPE: {'ASCII' if self.ascii else 'BINARY'}, FORM: Nonprint; STRUcture: File; transfer MODE: Stream",
                 f"Control connection: {'TLS' if self.tls else 'plain text'}; data protection: {'private' if self.protect else 'clear'}"]
        if self.phase is Phase.TRANSFER:
            lines.append(f"Data connection: {self._transfer_kind.upper()} in progress")
        else:
            lines.append(f"Data connection: {self.data_mode or 'none'}")
        return [Send(multiline(211, "FTP server status:", lines, "End of status."))]

    # ------------------------------------------------------------ parameters

    def _type(self, arg: str) -> list:
        words = arg.upper().split()
        if words in (["A"], ["A", "N"]):
            self.ascii = True
            return [Send(reply(200, "Type set to A."))]
        if words in (["I"], ["L", "8"]):
            self.ascii = False
            return [Send(reply(200, "Type set to I."))]
        if words and words[0] in ("E", "L", "A"):
            return [Send(reply(504, f"TYPE {arg} not supported."))]
        return [Send(reply(501, "TYPE accepts A or I."))]

    def _mode(self, arg: str) -> list:
        if arg.strip().upper() == "S":
            return [Send(reply(200, "Mode set to S."))]
        return [Send(reply(504 if arg.strip().upper() in ("B", "C") else 501, "Only MODE S (stream) is supported."))]

    def _stru(self, arg: str) -> list:
        if arg.strip().upper() == "F":
            return [Send(reply(200, "Structure set to F."))]
        return [Send(reply(504 if arg.strip().upper() in ("R", "P") else 501, "Only STRU F (file) is supported."))]

    def _allo(self, arg: str) -> list:
        return [Send(reply(202, "No storage allocation necessary."))]

    def _rest(self, arg: str) -> list:
        self.rest = commands.parse_rest(arg)
        return [Send(reply(350, f"Restarting at {self.rest}. Send RETR or STOR to resume."))]

    # ------------------------------------------------------------ data connection set-up

    def _pasv(self, arg: str) -> list:
        if self.epsv_all:
            return [Send(reply(503, "PASV not allowed after EPSV ALL."))]
        if self.policy.ipv6:
            return [Send(reply(522, "PASV is IPv4 only; use EPSV."))]
        return self._open_passive("PASV")

    def _epsv(self, arg: str) -> list:
        value = arg.strip().upper()
        if value == "ALL":
            self.epsv_all = True
            return [Send(reply(200, "EPSV ALL ok: only EPSV from now on."))]
        if value and value not in ("1", "2"):
            return [Send(reply(501, "EPSV accepts 1, 2 or ALL."))]
        if value and value != ("2" if self.policy.ipv6 else "1"):
            return [Send(reply(522, f"Network protocol not supported, use ({2 if self.policy.ipv6 else 1})"))]
        return self._open_passive("EPSV")

    def _open_passive(self, verb: str) -> list:
        self._move(Phase.BUSY)
        self._pending = (verb, "")
        return [OpenPassive(verb == "EPSV")]

    def _port(self, arg: str) -> list:
        if self.epsv_all:
            return [Send(reply(503, "PORT not allowed after EPSV ALL."))]
        if self.policy.ipv6:
            return [Send(reply(522, "PORT is IPv4 only; use EPRT."))]
        host, port = commands.parse_port(arg)
        return self._use_active(host, port)

    def _eprt(self, arg: str) -> list:
        if self.epsv_all:
            return [Send(reply(503, "EPRT not allowed after EPSV ALL."))]
        proto, host, port = commands.parse_eprt(arg)
        if (proto == 2) != self.policy.ipv6 and not same_host(host, self.policy.peer_host):
            return [Send(reply(522, f"Network protocol not supported, use ({2 if self.policy.ipv6 else 1})"))]
        return self._use_active(host, port)

    def _use_active(self, host: str, port: int) -> list:
        # RFC 2577: connect only to the client itself, never to a privileged port (no FTP bounce).
        if not same_host(host, self.policy.peer_host):
            return [Send(reply(504, "Refused: the data connection must go to your own address (no FTP bounce)."))]
        if port < 1024:
            return [Send(reply(504, "Refused: data connections to privileged ports are not allowed."))]
        self.data_mode = "active"
        return [UseActive(host, port), Send(reply(200, f"{'PORT' if '.' in host else 'EPRT'} command successful."))]

    # ------------------------------------------------------------ file system

    def _pwd(self, arg: str) -> list:
        return [Send(reply(257, f"{quote_path(self.cwd)} is the current directory."))]

    def _cwd(self, arg: str) -> list:
        return self._request("CWD", "cwd", self._path(arg))

    def _cdup(self, arg: str) -> list:
        return self._request("CWD", "cwd", paths.parent(self.cwd))

    def _mkd(self, arg: str) -> list:
        return self._request("MKD", "mkd", self._path(arg))

    def _rmd(self, arg: str) -> list:
        return self._request("RMD", "rmd", self._path(arg))

    def _dele(self, arg: str) -> list:
        return self._request("DELE", "dele", self._path(arg))

    def _rnfr(self, arg: str) -> list:
        return self._request("RNFR", "rnfr", self._path(arg))

    def _rnto(self, arg: str, rename_from: str | None) -> list:
        if rename_from is None:
            return [Send(reply(503, "RNTO must follow RNFR."))]
        return self._request("RNTO", "rnto", rename_from, target=self._path(arg))

    def _size(self, arg: str) -> list:
        return self._request("SIZE", "size", self._path(arg))

    def _mdtm(self, arg: str) -> list:
        return self._request("MDTM", "mdtm", self._path(arg))

    def _mlst(self, arg: str) -> list:
        return self._request("MLST", "mlst", self._path(arg, required=False), facts=self.mlst_facts)

    # ------------------------------------------------------------ transfers

    def _transfer(self, kind: str, path: str, *, resumable: bool) -> list:
        if self.data_mode is None:
            return [Send(reply(425, "Use PORT, PASV, EPRT or EPSV first."))]
        offset, self.rest = self.rest, 0
        if offset and not resumable:
            return [Send(reply(503, f"REST is not allowed with {kind.upper()}."))]
        if offset and self.ascii:
            return [Send(reply(550, "Resuming in ASCII mode is not supported; use TYPE I."))]
        if kind == "stor" and offset:
            kind = "rest"
        self._move(Phase.TRANSFER)
        self._transfer_kind = kind
        return [StartTransfer(kind, path, offset, self.ascii and kind not in ("list", "nlst", "mlsd"), self.mlst_facts)]

    def _retr(self, arg: str) -> list:
        return self._transfer("retr", self._path(arg), resumable=True)

    def _stor(self, arg: str) -> list:
        return self._transfer("stor", self._path(arg), resumable=True)

    def _appe(self, arg: str) -> list:
        return self._transfer("appe", self._path(arg), resumable=False)

    def _stou(self, arg: str) -> list:
        # The unique name is chosen in the target directory; a given name is the hint.
        return self._transfer("stou", self._path(arg or "ftp-upload"), resumable=False)

    def _list(self, arg: str) -> list:
        return self._transfer("list", self._path(commands.split_list_arg(arg)[1], required=False), resumable=False)

    def _nlst(self, arg: str) -> list:
        return self._transfer("nlst", self._path(commands.split_list_arg(arg)[1], required=False), resumable=False)

    def _mlsd(self, arg: str) -> list:
        return self._transfer("mlsd", self._path(arg, required=False), resumable=False)

    def _abor(self, arg: str) -> list:
        if self.phase is Phase.TRANSFER:
            self._aborting = True
            return [AbortTransfer()]
        if self.data_mode is not None:
            self.data_mode = None
            return [CloseData(), Send(reply(225, "ABOR command successful; data connection closed."))]
        return [Send(reply(226, "No transfer to abort."))]


# verb -> (handler, needs a login)
_HANDLERS = {
    "USER": (FtpSession._user, False),
    "PASS": (FtpSession._pass, False),
    "ACCT": (FtpSession._acct, False),
    "QUIT": (FtpSession._quit, False),
    "AUTH": (FtpSession._auth, False),
    "PBSZ": (FtpSession._pbsz, False),
    "PROT": (FtpSession._prot, False),
    "FEAT": (FtpSession._feat, False),
    "OPTS": (FtpSession._opts, False),
    "SYST": (FtpSession._syst, False),
    "HELP": (FtpSession._help, False),
    "NOOP": (FtpSession._noop, False),
    "STAT": (FtpSession._stat, False),
    "TYPE": (FtpSession._type, True),
    "MODE": (FtpSession._mode, True),
    "STRU": (FtpSession._stru, True),
    "ALLO": (FtpSession._allo, True),
    "REST": (FtpSession._rest, True),
    "PASV": (FtpSession._pasv, True),
    "EPSV": (FtpSession._epsv, True),
    "PORT": (FtpSession._port, True),
    "EPRT": (FtpSession._eprt, True),
    "PWD": (FtpSession._pwd, True),
    "CWD": (FtpSession._cwd, True),
    "CDUP": (FtpSession._cdup, True),
    "MKD": (FtpSession._mkd, True),
    "RMD": (FtpSession._rmd, True),
    "DELE": (FtpSession._dele, True),
    "RNFR": (FtpSession._rnfr, True),
    "RNTO": (None, True),  # dispatched with the pending RNFR path
    "SIZE": (FtpSession._size, True),
    "MDTM": (FtpSession._mdtm, True),
    "MLST": (FtpSession._mlst, True),
    "RETR": (FtpSession._retr, True),
    "STOR": (FtpSession._stor, True),
    "APPE": (FtpSession._appe, True),
    "STOU": (FtpSession._stou, True),
    "LIST": (FtpSession._list, True),
    "NLST": (FtpSession._nlst, True),
    "MLSD": (FtpSession._mlsd, True),
    "ABOR": (FtpSession._abor, True),
}
_ALIASES = {"XPWD": "PWD", "XCWD": "CWD", "XCUP": "CDUP", "XMKD": "MKD", "XRMD": "RMD"}
_NOT_IMPLEMENTED = frozenset(("REIN", "SMNT", "SITE", "CCC", "ADAT", "MIC", "CONF", "ENC", "LANG", "MFMT", "HOST"))
