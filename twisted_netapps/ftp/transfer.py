"""One FTP transfer over a data connection: open the file, move the bytes, report the end.

RETR streams the file with back-pressure: ``os.sendfile`` on plain TCP
(:mod:`twisted_netapps.ftp.zerocopy`), else a pull producer reading
``CHUNK`` bytes each time the transport's buffer drains (under TLS, or in
TYPE A). STOR moves the bytes with ``os.splice`` on plain TCP
(same module), else writes each received chunk
straight to the upload's file descriptor (no copies kept); then ``fsync`` +
rename run in the disk pool before the 226. Listings are built in the disk pool and written in one piece.
"""

from __future__ import annotations

from twisted.internet import error, interfaces
from twisted.logger import Logger
from zope.interface import implementer

from twisted_netapps.ftp import paths, session as core, textmode
from twisted_netapps.ftp.filesystem import IO, FileError
from twisted_netapps.ftp.zerocopy import SendfileSender, SpliceReceiver, sendfile_socket, splice_socket
from twisted_netapps.ratelimit import ThrottledConsumer

log = Logger(namespace="netapps.ftp")

CHUNK = 256 * 1024
# RETR of a file up to this size: opened and read on the reactor thread and
# written in one piece (a page-cache read of this size costs less than the
# thread hop, and a sendfile set-up more than the copy).
SMALL_FILE = 64 * 1024


def as_file_error(failure, what: str) -> FileError:
    """The FileError a failed disk operation carries; anything else is a bug:
    logged with its traceback (once), and the client gets a plain 451."""
    if failure.check(FileError):
        return failure.value
    log.failure("ftp: unexpected error in {what}", failure, what=what)
    return FileError(IO, "Local error in processing.")


@implementer(interfaces.IPullProducer)
class _FileProducer:
    """Reads the file in CHUNKs each time the data transport wants more."""

    def __init__(self, transfer: "Transfer", handle, ascii: bool) -> None:
        self.transfer = transfer
        self.handle = handle
        self.ascii = ascii

    def resumeProducing(self) -> None:
        transfer = self.transfer
        chunk = self.handle.read(CHUNK)
        if not chunk:
            transfer.out.unregisterProducer()
            transfer.sent_all()
            return
        if self.ascii:
            chunk = textmode.to_network(chunk)
        transfer.progress(len(chunk))
        transfer.out.write(chunk)

    def stopProducing(self) -> None:
        pass  # the connection went away: data_connection_lost reports it


class Transfer:
    """Drives one StartTransfer request from file open to the final reply."""

    def __init__(self, control, request, fs) -> None:
        self.control = control  # the FtpControl protocol
        self.request = request
        self.fs = fs
        self.kind = request.kind
        self.handle = None  # RETR: the open file
        self.upload = None  # STOR/APPE/STOU: the Upload
        self.payload: bytes | None = None  # listings and small files, whole
        self.connection = None
        self.out = None  # the data transport, or a ThrottledConsumer before it (ftp.upload_rate)
        self.sender: SendfileSender | None = None
        self.receiver: SpliceReceiver | None = None
        self.decoder = textmode.FromNetwork() if request.ascii else None
        self.bytes = 0
        self.finished = False  # all data handed over / the peer's EOF seen
        self.over = False  # the final reply has been decided

    # ------------------------------------------------------------ opening

    def start(self) -> None:
        inline = self.kind == "retr" or (
            self.kind in ("list", "nlst", "mlsd") and self.fs.is_small_directory(self.request.path))
        if inline:  # one open and, for a small file, one read (SMALL_FILE); or a one-block directory
            try:
                opened = self._open()
            except FileError as e:
                self.over = True
                self.control.transfer_ended(self, self.control.session.file_failed(e))
                return
            self._opened(opened)
            return
        d = self.control.factory.run_disk(self._open)
        d.addCallbacks(self._opened, self._open_failed)

    def _open(self):
        fs, request = self.fs, self.request
        if self.kind == "retr":
            handle, size = fs.open_read(request.path, request.offset)
            name = paths.basename(request.path) if request.path != "/" else "/"
            if size - request.offset <= SMALL_FILE:
                with handle:
                    data = handle.read(SMALL_FILE + 1)
                return (textmode.to_network(data) if request.ascii else data), name
            return handle, name
        if self.kind in ("list", "nlst", "mlsd"):
            return fs.listing(request.path, self.kind, request.facts), request.path
        path = request.path
        mode = {"stor": "stor", "appe": "appe", "rest": "rest", "stou": "stor"}[self.kind]
        if self.kind == "stou":
            path = fs.unique_name(paths.parent(path), paths.basename(path))
        return fs.open_write(path, mode, request.offset), paths.basename(path)

    def _opened(self, result) -> None:
        opened, name = result
        if self.over:  # ABOR or a lost control connection while opening
            self._release(opened)
            return
        if isinstance(opened, bytes):  # a listing, or a small file already read
            self.payload = opened
        elif self.kind == "retr":
            self.handle = opened
        else:
            self.upload = opened
        channel = self.control.channel
        self.control.resume(self.control.session.transfer_started(channel.is_connected, name))
        d = channel.wait()
        d.addCallbacks(self._connected, self._not_connected)

    def _open_failed(self, failure) -> None:
        if self.over:
            return
        self.over = True
        error = as_file_error(failure, f"opening {self.request.path}")
        self.control.transfer_ended(self, self.control.session.file_failed(error))

    def _release(self, opened) -> None:
        if hasattr(opened, "discard"):
            self.control.factory.run_disk(opened.discard)
        elif hasattr(opened, "close"):
            opened.close()

    # ------------------------------------------------------------ moving bytes

    def _connected(self, connection) -> None:
        if self.over:
            connection.transport.abortConnection()
            return
        self.connection = connection
        if self.upload is not None and not (connection.tls or self.request.ascii):
            sock = splice_socket(self.control.factory.reactor, connection.transport, self.upload.fd)
            if sock is not None:  # the transport stays paused: the receiver reads
                connection.transfer = self
                self.control.factory.stats.incr("splice_transfers")
                self.receiver = SpliceReceiver(self.control.factory.reactor, sock, self.upload.fd,
                                               self.progress, self._splice_done)
                self.receiver.start()
                return
        connection.attach(self)
        buckets = self.control.factory.upload_buckets
        self.out = ThrottledConsumer(connection.transport, buckets, self.control.factory.reactor) \
            if buckets and self.upload is None else connection.transport
        if self.payload is not None:
            self.progress(len(self.payload))
            self.out.write(self.payload)
            self.sent_all()
        elif self.kind == "retr":
            plain = not (connection.tls or self.request.ascii or buckets)
            sock = sendfile_socket(self.control.factory.reactor, connection.transport) if plain else None
            if sock is not None:
                self.control.factory.stats.incr("sendfile_transfers")
                self.sender = SendfileSender(self.control.factory.reactor, sock, self.handle,
                                             self.progress, self._sendfile_done)
                self.sender.start()
            else:
                self.out.registerProducer(_FileProducer(self, self.handle, self.request.ascii), False)

    def _not_connected(self, failure) -> None:
        if self.over:
            return
        if failure.check(error.ConnectionLost):
            self._fail(core.TLS_FAILED)
            return
        failure.trap(error.ConnectError, error.ConnectionAborted, error.TimeoutError, error.ConnectingCancelledError)
        self._fail(core.NO_CONNECTION)

    def progress(self, count: int) -> None:
        self.bytes += count  # (uploads written by data_received count themselves)
        if self.connection is not None:
            self.connection.resetTimeout()

    def _sendfile_done(self, failure: BaseException | None) -> None:
        self.sender = None
        if failure is not None:
            self._fail(core.CONNECTION_LOST)
            return
        self.progress(0)
        self.sent_all()

    def _splice_done(self, failure: BaseException | None) -> None:
        self.receiver = None
        if failure is not None:
            self._fail(core.CONNECTION_LOST)
            return
        self.finished = True  # the client's EOF: close our side; 226 once committed
        self.connection.transport.loseConnection()

    def sent_all(self) -> None:
        """Everything is handed to the transport: close it; 226 once it is closed."""
        self.finished = True
        transport = self.connection.transport
        if self.out is transport:
            transport.loseConnection()
        else:  # through the upload cap first
            self.out.when_drained().addCallback(lambda _: transport.loseConnection())

    def data_received(self, data: bytes) -> None:
        if self.upload is None or self.over:
            return
        if self.decoder is not None:
            data = self.decoder.feed(data)
        try:
            self.upload.write(data)
        except OSError as e:
            log.info("ftp: upload write failed: {error}", error=e)
            self.connection.transport.abortConnection()
            self._fail("", FileError("no space" if e.errno in (28, 122) else "i/o error", f"Write failed: {e.strerror}."))
            return
        self.bytes += len(data)

    def data_connection_lost(self, reason) -> None:
        if isinstance(self.out, ThrottledConsumer):
            self.out.close()
        if self.over:
            return
        if self.upload is not None:
            if self.finished:  # spliced to the end; this is our own close
                self._commit()
                return
            if self.receiver is not None:  # closed under the receiver (our abort, a timeout)
                self._fail(core.CONNECTION_LOST)
                return
            # The client's EOF ends an upload. Under TLS, clients such as lftp
            # close without a close_notify, which the TLS layer reports as
            # ConnectionLost, the same as a reset: accepted, as vsftpd does by
            # default (strict_ssl_read_eof=NO). On plain TCP a reset is a failure.
            if reason.check(error.ConnectionDone) or (self.connection.tls and reason.check(error.ConnectionLost)):
                self._commit()
            else:
                self._fail(core.CONNECTION_LOST)
            return
        if self.finished:
            self._succeed()
        else:
            self._fail(core.CONNECTION_LOST)

    def data_idle(self) -> None:
        self._fail(core.TIMED_OUT)

    def _commit(self) -> None:
        self.over = True
        upload = self.upload
        if self.decoder is not None:
            tail = self.decoder.finish()
            if tail:
                upload.write(tail)
        d = self.control.factory.run_disk(upload.commit)

        def committed(_):
            stats = self.control.factory.stats
            stats.incr("files_received")
            stats.incr("bytes_received", self.bytes)
            self.control.transfer_ended(self, self.control.session.transfer_done())

        def failed(failure):
            error = as_file_error(failure, f"committing {self.request.path}")
            self.control.transfer_ended(self, self.control.session.transfer_failed("", error))

        d.addCallbacks(committed, failed)

    def _succeed(self) -> None:
        self.over = True
        self._close_file()
        stats = self.control.factory.stats
        if self.kind == "retr":
            stats.incr("files_sent")
            stats.incr("bytes_sent", self.bytes)
        elif self.kind in ("list", "nlst", "mlsd"):
            stats.incr("listings")
        self.control.transfer_ended(self, self.control.session.transfer_done())

    def _fail(self, reason: str, error_: FileError | None = None) -> None:
        if self.over:
            return
        self.over = True
        self._stop_moving()
        self.control.transfer_ended(self, self.control.session.transfer_failed(reason, error_))

    # ------------------------------------------------------------ ending early

    def abort(self) -> None:
        """ABOR: stop now; the core answers 426 then 226."""
        if self.over:
            return
        self.control.factory.stats.incr("aborts")
        self._fail(core.ABORTED)

    def stop(self) -> None:
        """The control connection is gone: release everything, report nothing."""
        if not self.over:
            self.over = True
            self._stop_moving()

    def _stop_moving(self) -> None:
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None
        if self.connection is not None and not self.connection.lost:
            self.connection.transport.abortConnection()
        self._close_file()
        if self.upload is not None:
            upload, self.upload = self.upload, None
            self.control.factory.run_disk(upload.discard)

    def _close_file(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
