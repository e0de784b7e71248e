"""The IMAP4rev1 server: ``twisted.mail.imap4.IMAP4Server`` with what it gets wrong fixed.

Checked against imaplib, curl and fetchmail, the stock server (Twisted 26)
needed these changes, made here:

- partial fetches (``BODY[]<o.n>``) sent the whole section under a wrong
  ``<o.n>`` label: we slice and answer ``BODY[]<o>`` (RFC 3501 7.4.2);
- ``BODY[HEADER]``/``RFC822.HEADER``/``HEADER.FIELDS`` were rebuilt from a dict
  (duplicate ``Received:`` lines lost, folding changed): we send the stored bytes;
- ENVELOPE/BODYSTRUCTURE lower-cased parameter values (attachment names), and
  a header with 8-bit bytes or a malformed Content-Type dropped the connection
  (see :mod:`twisted_netapps.mail.imap.structure`);
- SEARCH compared bytes with str and failed for every text key (our own, in
  :mod:`twisted_netapps.mail.imap.search`);
- a non-PEEK body fetch did not set ``\\Seen``;
- COPY/APPEND/SELECT error paths mixed str and bytes (a crash instead of
  ``NO [TRYCREATE]``), and APPEND announced ``EXISTS`` of the *target* folder
  as if it were the selected one;
- IDLE ended on any line and never pushed anything; changes made by other
  sessions (or SMTP delivery) were never reported, EXPUNGE notices not at all:
  we report them at NOOP/CHECK/IDLE and before each tagged reply, holding
  EXPUNGE back during FETCH/STORE/SEARCH (RFC 3501 7.4.1);
- commands pipelined behind LOGIN/AUTHENTICATE/APPEND/COPY ran before those
  finished (``a LOGIN`` + ``b SELECT`` gave ``b BAD``); commands pipelined
  after STARTTLS ran inside the TLS session (the CVE-2011-0411 injection);
- SEARCH took no literals (how MUAs send non-ASCII strings); STORE on an
  EXAMINEd mailbox was a "server error"; a bare ``+`` continuation;
- no MOVE (RFC 6851), no UNSELECT, no limits on APPEND literals; LOGIN was
  refused whenever TLS was merely available; failed logins were not slowed.

Replies are small and frequent, so TCP_NODELAY is set (no Nagle/delayed-ACK
stalls); Twisted already coalesces the writes of one reactor turn.
"""

from __future__ import annotations

import re

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.mail import imap4
from zope.interface import implementer

from twisted_netapps.addresses import format_peer, is_loopback
from twisted_netapps.mail.imap.mailbox import ImapMessage
from twisted_netapps.mail.imap.mime import MimePart, section
from twisted_netapps.mail.imap.search import SearchError, compile_search
from twisted_netapps.mail.imap.structure import body_structure, envelope, serialize

#: What a connection over the frame's limits is told before it is closed.
TOO_MANY_CONNECTIONS = b"* BYE [UNAVAILABLE] too many connections, try again later\r\n"

log = Logger(namespace="netapps.imap")

_NO_EXPUNGE_DURING = {b"FETCH", b"STORE", b"SEARCH"}


class SlowFailurePortal:
    """The server's view of the portal: failed logins answer only after *delay*
    seconds (a timer, not a sleep), and commands pipelined behind a LOGIN or
    AUTHENTICATE wait for its outcome (Twisted ran them at once, in the
    not-authenticated state: ``a LOGIN ..`` + ``b SELECT INBOX`` got ``b BAD``)."""

    def __init__(self, portal, delay: float, reactor, stats, server) -> None:
        self.portal = portal
        self.delay = delay
        self.reactor = reactor
        self.stats = stats
        self.server = server

    def login(self, creds, mind, *interfaces):
        server = self.server
        if server.blocked is None:
            server.blocked = []
        d = self.portal.login(creds, mind, *interfaces)

        def finished(result):
            # After the server's own callbacks (added to this Deferred later) changed state.
            self.reactor.callLater(0, server._unblock)
            return result


        def failed(failure):
            self.stats.incr("login_failures")
            log.info("imap: {peer}: failed login for {user}", peer=server.peer, user=_name(creds))
            return _later(self.reactor, self.delay, failure)

        def succeeded(result):
            self.stats.incr("logins")
            log.info("imap: {peer}: {user} logged in", peer=server.peer, user=_name(creds))
            return result

        d.addCallbacks(succeeded, failed)
        d.addBoth(finished)  # after the failure delay, too
        return d


def _name(creds) -> str:
    name = getattr(creds, "username", b"?")
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _later(reactor, delay: float, failure):
    d = defer.Deferred()
    reactor.callLater(delay, d.errback, failure)
    return d


@implementer(interfaces.IHalfCloseableProtocol)
class ImapServer(imap4.IMAP4Server):
    IDENT = b"twisted-netapps IMAP4rev1 ready"
    _peer_done = False

    def __init__(self, factory: "ImapFactory") -> None:
        chal = {b"PLAIN": imap4.PLAINCredentials}
        super().__init__(chal=chal, contextFactory=factory.tls_options, scheduler=factory.scheduler)
        self.factory = factory
        self.portal = SlowFailurePortal(factory.portal, factory.login_failure_delay, factory.reactor, factory.stats, self)
        self.callLater = factory.reactor.callLater
        self.timeOut = factory.login_timeout
        self.POSTAUTH_TIMEOUT = factory.idle_timeout
        self.MAX_LENGTH = factory.max_line
        self._command = b""
        self._idle_tag = None

    # ------------------------------------------------------------ connection

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        peer = self.transport.getPeer()
        self.peer = format_peer(peer)
        self.loopback = is_loopback(peer)
        super().connectionMade()

    def connectionLost(self, reason) -> None:
        self._close_mailbox()
        super().connectionLost(reason)

    def lineLengthExceeded(self, line) -> None:
        self.factory.stats.incr("errors")
        self.transport.write(b"* BYE line too long\r\n")
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.incr("bytes_in", len(data))
        super().dataReceived(data)

    # IHalfCloseableProtocol: a client that sends its commands and then FIN
    # (`printf '...' | nc -N`) still gets every answer, even those waiting on
    # a LOGIN or FETCH; then we close.

    def readConnectionLost(self) -> None:
        self._peer_done = True
        self._close_if_answered()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def _unblock(self):
        super()._unblock()
        self._close_if_answered()

    def _close_if_answered(self) -> None:
        if self._peer_done and self.blocked is None:
            self.transport.loseConnection()

    def _close_mailbox(self) -> None:
        if self.mbox is not None:
            self.mbox.removeListener(self)
            self.mbox.close()

    # ------------------------------------------------------------ policy

    def _plaintext_allowed(self) -> bool:
        policy = self.factory.plaintext_auth
        return policy == "always" or self.startedTLS or (policy == "loopback" and self.loopback)

    def capabilities(self):
        caps: dict = {}
        if self._plaintext_allowed():
            caps[b"AUTH"] = [b"PLAIN"]
        else:
            caps[b"LOGINDISABLED"] = None
        if self.ctx is not None and self.canStartTLS and not self.startedTLS:
            caps[b"STARTTLS"] = None
        for name in (b"IDLE", b"NAMESPACE", b"MOVE", b"UNSELECT", b"CHILDREN"):
            caps[name] = None
        return caps

    def do_LOGIN(self, tag, user, passwd):
        if not self._plaintext_allowed():
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
            return
        super().do_LOGIN(tag, user, passwd)

    unauth_LOGIN = (do_LOGIN, imap4.IMAP4Server.arg_astring, imap4.IMAP4Server.arg_finalastring)

    def do_AUTHENTICATE(self, tag, args):
        if not self._plaintext_allowed():
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] AUTHENTICATE PLAIN is disabled before STARTTLS")
            return
        super().do_AUTHENTICATE(tag, args)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, imap4.IMAP4Server.arg_atom)

    def do_STARTTLS(self, tag):
        # Commands pipelined after STARTTLS were sent in the clear: they must not
        # run inside the TLS session (the CVE-2011-0411 injection). Drop them.
        self.clearLineBuffer()
        super().do_STARTTLS(tag)
        if self.startedTLS:
            log.info("imap: {peer} started TLS", peer=self.peer)

    unauth_STARTTLS = (do_STARTTLS,)

    # ------------------------------------------------------------ dispatch & updates

    def dispatchCommand(self, tag, cmd, rest, uid=None):
        self.factory.stats.incr("requests")
        self._command = cmd.upper()
        return super().dispatchCommand(tag, cmd, rest, uid)

    def _send_updates(self, allow_expunge: bool) -> None:
        if self.mbox is None:
            return
        for line in self.mbox.take_updates(allow_expunge):
            self._respond(line, None, None)

    def sendPositiveResponse(self, tag=None, message=b""):
        if tag is not None and self.mbox is not None:
            self._send_updates(self._command not in _NO_EXPUNGE_DURING)
        super().sendPositiveResponse(tag, message)

    def sendNegativeResponse(self, tag=None, message=b""):
        if isinstance(message, str):
            message = message.encode("utf-8")
        self.factory.stats.incr("errors")
        super().sendNegativeResponse(tag, message)

    def sendBadResponse(self, tag=None, message=b""):
        if isinstance(message, str):
            message = message.encode("utf-8")
        self.factory.stats.incr("errors")
        super().sendBadResponse(tag, message)

    def mailbox_changed(self, view) -> None:
        """Called by our MailboxView when the folder changed elsewhere."""
        if self._idle_tag is not None and view is self.mbox:
            self._send_updates(allow_expunge=True)

    # newMessages/flagsChanged of IMailboxListener: our views report through mailbox_changed.
    def newMessages(self, exists, recent):
        pass

    def flagsChanged(self, newFlags):
        pass

    # ------------------------------------------------------------ SELECT / EXAMINE / CLOSE

    def _cbSelectWork(self, mbox, cmdName, tag):
        if mbox is None:
            self.sendNegativeResponse(tag, b"No such mailbox")
            return
        mbox.open()
        flags = " ".join(mbox.getFlags()).encode("ascii")
        self._respond(b"FLAGS (%s)" % flags, None, None)
        self._respond(b"OK [PERMANENTFLAGS (%s)] Limited" % (flags if mbox.isWriteable() else b""), None, None)
        self._respond(b"%d EXISTS" % mbox.getMessageCount(), None, None)
        self._respond(b"%d RECENT" % mbox.getRecentCount(), None, None)
        unseen = mbox.first_unseen()
        if unseen is not None:
            self._respond(b"OK [UNSEEN %d] First unseen" % unseen, None, None)
        self._respond(b"OK [UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity(), None, None)
        self._respond(b"OK [UIDNEXT %d] Predicted next UID" % mbox.getUIDNext(), None, None)
        mbox.addListener(self)
        self.mbox = mbox
        self.state = "select"
        mode = b"READ-WRITE" if mbox.isWriteable() else b"READ-ONLY"
        super().sendPositiveResponse(tag, b"[" + mode + b"] " + cmdName + b" completed")

    def _selectWork(self, tag, name, rw, cmdName):
        if self.mbox is not None:
            self._close_mailbox()
            self.mbox = None
            self.state = "auth"
        super()._selectWork(tag, name, rw, cmdName)

    auth_SELECT = (_selectWork, imap4.IMAP4Server.arg_astring, 1, b"SELECT")
    select_SELECT = auth_SELECT
    auth_EXAMINE = (_selectWork, imap4.IMAP4Server.arg_astring, 0, b"EXAMINE")
    select_EXAMINE = auth_EXAMINE

    def do_UNSELECT(self, tag):
        self._close_mailbox()
        self.mbox = None
        self.state = "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_CLOSE(self, tag):
        mbox = self.mbox
        if mbox.isWriteable():
            mbox.expunge()  # silently: CLOSE sends no EXPUNGE responses
        self._close_mailbox()
        self.mbox = None
        self.state = "auth"
        self.sendPositiveResponse(tag, b"CLOSE completed")

    select_CLOSE = (do_CLOSE,)

    def do_NOOP(self, tag):
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = logout_NOOP = (do_NOOP,)

    def do_CHECK(self, tag):
        self.sendPositiveResponse(tag, b"CHECK completed")

    select_CHECK = (do_CHECK,)

    # ------------------------------------------------------------ IDLE (RFC 2177)

    def do_IDLE(self, tag):
        self._idle_tag = tag
        self.parseState = "idle"
        self.sendContinuationRequest(b"idling")
        self._send_updates(allow_expunge=True)

    def parse_idle(self, line):
        tag, self._idle_tag = self._idle_tag, None
        self.parseState = "command"
        if line.strip().upper() == b"DONE":
            self.sendPositiveResponse(tag, b"IDLE terminated")
        else:
            self.sendBadResponse(tag, b"expected DONE")

    select_IDLE = auth_IDLE = (do_IDLE,)

    # ------------------------------------------------------------ STATUS / APPEND

    def _cbStatusGotMailbox(self, mbox, tag, mailbox, names):
        if not mbox:
            self.sendNegativeResponse(tag, b"[TRYCREATE] No such mailbox")
            return
        try:
            status = mbox.requestStatus(names)
        except imap4.IllegalClientResponse as e:
            self.sendBadResponse(tag, str(e))
            return
        items = " ".join(f"{k} {v}" for k, v in status.items()).encode("ascii")
        self._respond(b"STATUS " + imap4._quote(mailbox.encode("imap4-utf-7")) + b" (" + items + b")", None, None)
        self.sendPositiveResponse(tag, b"STATUS completed")

    def arg_literal(self, line):
        if line[:1] == b"{" and line[-1:] == b"}":
            try:
                size = int(line[1:-1].rstrip(b"+"))
            except ValueError:
                raise imap4.IllegalClientResponse("bad literal size") from None
            if size > self.factory.max_message_size:
                raise imap4.IllegalClientResponse(
                    f"[TOOBIG] message larger than {self.factory.max_message_size} octets"
                )
        return super().arg_literal(line)

    def do_APPEND(self, tag, mailbox, flags, date, message):
        mailbox = imap4._parseMbox(mailbox)
        mbox = self.account.open_view(mailbox, True, claim_recent=False)
        if mbox is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] No such mailbox")
            return
        flag_names = [f.decode("ascii", "replace") if isinstance(f, bytes) else f for f in (flags or [])]
        self._hold_commands()
        d = mbox.addMessage(message, flag_names, date)
        d.addCallback(lambda uid: self.sendPositiveResponse(tag, b"APPEND completed"))
        d.addErrback(self._failed, tag, "APPEND")
        d.addBoth(self._release_commands)

    def _hold_commands(self) -> None:
        """Queue the commands that follow until the current one (waiting on a thread) is done."""
        if self.blocked is None:
            self.blocked = []

    def _release_commands(self, result=None):
        self.callLater(0, self._unblock)
        return result

    auth_APPEND = (
        do_APPEND,
        imap4.IMAP4Server.arg_astring,
        imap4.IMAP4Server.opt_plist,
        imap4.IMAP4Server.opt_datetime,
        arg_literal,
    )
    select_APPEND = auth_APPEND

    def _failed(self, failure, tag, what: str) -> None:
        if failure.check(imap4.MailboxException):
            self.sendNegativeResponse(tag, f"{what} failed: {failure.value}")
            return
        log.failure("imap: {peer}: {what} failed", failure, peer=self.peer, what=what)
        self.sendNegativeResponse(tag, f"[SERVERBUG] {what} failed")

    # ------------------------------------------------------------ COPY / MOVE

    def _copy_or_move(self, tag, messages, mailbox, uid, move: bool):
        what = "MOVE" if move else "COPY"
        target = self.account.open_view(imap4._parseMbox(mailbox), True, claim_recent=False)
        if target is None:
            self.sendNegativeResponse(tag, b"[TRYCREATE] No such mailbox")
            return
        try:
            selected = self.mbox.fetch(messages, uid)
        except imap4.IllegalClientResponse as e:
            self.sendBadResponse(tag, str(e))
            return
        if move and not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"MOVE needs a read-write mailbox")
            return
        self._hold_commands()
        d = defer.gatherResults([target.copy(msg) for _seq, msg in selected], consumeErrors=True)

        def copied(_):
            if move:
                for seq in self.mbox.expunge_uids([msg.uid for _seq, msg in selected]):
                    self._respond(b"%d EXPUNGE" % seq, None, None)
            self.sendPositiveResponse(tag, f"{what} completed".encode("ascii"))

        def failed(failure):
            if isinstance(failure.value, defer.FirstError):
                failure = failure.value.subFailure
            self._failed(failure, tag, what)

        d.addCallbacks(copied, failed)
        d.addBoth(self._release_commands)

    def do_COPY(self, tag, messages, mailbox, uid=0):
        self._copy_or_move(tag, messages, mailbox, uid, move=False)

    def do_MOVE(self, tag, messages, mailbox, uid=0):
        self._copy_or_move(tag, messages, mailbox, uid, move=True)

    select_COPY = (do_COPY, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_finalastring)
    select_MOVE = (do_MOVE, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_finalastring)

    def do_UID(self, tag, command, line):
        command = command.upper()
        if command not in (b"COPY", b"MOVE", b"FETCH", b"STORE", b"SEARCH"):
            raise imap4.IllegalClientResponse(command)
        self.dispatchCommand(tag, command, line, uid=1)

    select_UID = (do_UID, imap4.IMAP4Server.arg_atom, imap4.IMAP4Server.arg_line)

    # ------------------------------------------------------------ STORE

    def do_STORE(self, tag, messages, mode, flags, uid=0):
        if not self.mbox.isWriteable():
            self.sendNegativeResponse(tag, b"[READ-ONLY] mailbox was opened with EXAMINE")
            return
        try:
            self.mbox.select_uids(messages.__class__(list(messages.ranges)), uid)
        except imap4.IllegalClientResponse as e:
            self.sendBadResponse(tag, str(e))
            return
        super().do_STORE(tag, messages, mode, flags, uid)

    select_STORE = (
        do_STORE, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_atom, imap4.IMAP4Server.arg_flaglist
    )

    # ------------------------------------------------------------ SEARCH

    def do_SEARCH(self, tag, charset, query, uid=0):
        if charset is not None and charset.upper() not in (b"US-ASCII", b"UTF-8"):
            self.sendNegativeResponse(tag, b"[BADCHARSET (US-ASCII UTF-8)] unsupported charset")
            return
        mbox = self.mbox
        try:
            match = compile_search(query, len(mbox.uids), mbox.uids[-1] if mbox.uids else 0)
        except SearchError as e:
            self.sendBadResponse(tag, f"SEARCH: {e}")
            return
        hits = []
        for seq, message_uid in enumerate(mbox.uids, 1):
            message = ImapMessage(mbox, message_uid, seq)
            try:
                if message.entry is not None and match(message):
                    hits.append(message_uid if uid else seq)
            except OSError:  # removed by another client meanwhile: not a hit
                continue
        self._respond(b"SEARCH" + b"".join(b" %d" % h for h in hits), None, None)
        self.sendPositiveResponse(tag, b"SEARCH completed")

    def arg_searchkeys(self, line, _before=b""):
        """Search keys, with literals (``SUBJECT {5}`` + ``café``: how MUAs send
        non-ASCII strings; Twisted's parser took only one line). Each literal is
        read, then put back into the line as a quoted string."""
        match = _LITERAL_AT_END.search(line)
        if match is None:
            try:
                return (imap4.parseNestedParens(_before + line), b"")
            except imap4.MismatchedNesting as e:
                raise imap4.IllegalClientResponse(f"unbalanced parentheses: {e}") from None
        before = _before + line[: match.start()]
        if len(before) > self.MAX_LENGTH:
            raise imap4.IllegalClientResponse("search too long")
        d = self._stringLiteral(int(match.group(1)))  # bounded by _literalStringLimit
        return d.addCallback(lambda result: self.arg_searchkeys(result[1], before + _quoted(result[0])))

    select_SEARCH = (do_SEARCH, imap4.IMAP4Server.opt_charset, arg_searchkeys)

    # ------------------------------------------------------------ FETCH

    def do_FETCH(self, tag, messages, query, uid=0):
        try:  # answer a bad message number with BAD here, not with a logged traceback later
            self.mbox.select_uids(messages.__class__(list(messages.ranges)), uid)
        except imap4.IllegalClientResponse as e:
            self.sendBadResponse(tag, str(e))
            return
        if self.mbox.isWriteable() and any(_sets_seen(part) for part in query):
            # RFC 3501 6.4.5: BODY[...] (not PEEK), RFC822 and RFC822.TEXT set \Seen.
            try:
                changed = self.mbox.store(messages.__class__(list(messages.ranges)), ["\\Seen"], 1, uid)
            except imap4.IllegalClientResponse as e:
                self.sendBadResponse(tag, str(e))
                return
            if changed and not any(p.type == "flags" for p in query):
                query = list(query) + [imap4._FetchParser.Flags()]
        super().do_FETCH(tag, messages, query, uid)

    select_FETCH = (do_FETCH, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_fetchatt)

    def _literal_section(self, label: bytes, data: bytes, part, _w) -> None:
        begin = part.partialBegin if part is not None else None
        if begin is not None:
            data = data[begin: begin + part.partialLength]
            label += b"<%d>" % begin
        _w(label + b" {%d}\r\n" % len(data) + data)

    def spew_envelope(self, id, msg, _w=None, _f=None):
        _w(b"ENVELOPE " + serialize([envelope(msg.mime)]))

    def spew_bodystructure(self, id, msg, _w=None, _f=None):
        _w(b"BODYSTRUCTURE " + serialize([body_structure(msg.mime, True)]))

    def spew_body(self, part, id, msg, _w=None, _f=None):
        if part.part == () and not (part.header or part.text or part.mime or part.empty):
            _w(b"BODY " + serialize([body_structure(msg.mime, False)]))
            return
        numbers = [p + 1 for p in part.part]
        root: MimePart = msg.mime
        try:
            target = section(root, numbers)
        except IndexError:
            target = None
        spec = b".".join(b"%d" % n for n in numbers)
        if part.header:
            entity = _entity(target, numbers)
            fields = [f.decode("ascii", "replace") if isinstance(f, bytes) else f for f in (part.header.fields or [])]
            data = b"" if entity is None else (
                entity.header_fields(fields, bool(part.header.negate)) if part.header.fields else entity.header
            )
            name = str(part.header).encode("ascii")
        elif part.text:
            entity = _entity(target, numbers)
            data, name = (b"" if entity is None else entity.body), b"TEXT"
        elif part.mime:
            data, name = (b"" if target is None else target.header), b"MIME"
        else:  # BODY[] or BODY[n]
            if not numbers:
                data = root.raw
            else:
                data = b"" if target is None else target.body
            name = b""
        inner = spec + (b"." if spec and name else b"") + name
        self._literal_section(b"BODY[" + inner + b"]", data, part, _w)

    def spew_rfc822(self, id, msg, _w=None, _f=None):
        self._literal_section(b"RFC822", msg.mime.raw, None, _w)

    def spew_rfc822header(self, id, msg, _w=None, _f=None):
        self._literal_section(b"RFC822.HEADER", msg.mime.header, None, _w)

    def spew_rfc822text(self, id, msg, _w=None, _f=None):
        self._literal_section(b"RFC822.TEXT", msg.mime.body, None, _w)

    def sendContinuationRequest(self, msg=b"Ready for additional command text"):
        # RFC 3501 continue-req is "+" SP text: Twisted sent a bare "+" for an
        # empty SASL challenge, which strict clients reject.
        self.sendLine(b"+ " + (msg or b""))

    # ------------------------------------------------------------ output accounting

    def sendLine(self, line):
        self.factory.stats.incr("bytes_out", len(line) + 2)
        return super().sendLine(line)


_LITERAL_AT_END = re.compile(rb"\{(\d{1,9})\+?\}$")


def _quoted(value: bytes) -> bytes:
    if b"\r" in value or b"\n" in value:
        raise imap4.IllegalClientResponse("line breaks in a search string")
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _sets_seen(part) -> bool:
    if part.type == "body":
        return not part.peek and (part.header or part.text or part.mime or part.empty or part.part)
    return part.type in ("rfc822", "rfc822text")


def _entity(target: MimePart | None, numbers: list[int]) -> MimePart | None:
    """The message whose HEADER/TEXT is meant: the root, or the one inside a message/rfc822 part."""
    if target is None:
        return None
    if numbers and target.content_type() == ("message", "rfc822"):
        return target.embedded()
    return target


class ImapFactory(protocol.Factory):
    """Builds :class:`ImapServer` connections."""

    noisy = False

    def __init__(self, *, portal, stats, reactor, tls_options, settings, registry) -> None:
        self.portal = portal
        self.stats = stats
        self.reactor = reactor
        self.tls_options = tls_options
        self.registry = registry
        self.login_timeout = settings.login_timeout
        self.idle_timeout = settings.idle_timeout
        self.max_line = settings.max_line
        self.max_message_size = settings.max_message_size
        self.login_failure_delay = settings.login_failure_delay
        self.plaintext_auth = settings.plaintext_auth
        self.scheduler = None  # FETCH output pacing: Twisted's default (one message per reactor turn)

    def buildProtocol(self, addr):
        return ImapServer(self)
