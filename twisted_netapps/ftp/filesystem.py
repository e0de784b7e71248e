"""The jailed file system each FTP login sees: storage layer, blocking calls, no Twisted.

A login gets a :class:`JailedFilesystem` rooted at its directory. Every path
the client names is first normalised as a virtual path
(:func:`twisted_netapps.ftp.paths.normalize`: no ``..`` can climb above
``/``), then mapped below the root with **every symlink resolved** and the
result checked to be the root or inside it; a symlink pointing outside is
refused as if the file did not exist for this user. Operations on an entry
itself (DELE, RMD, RNFR/RNTO, the name STOR creates) resolve only the parent
directory and act on the link, never on what it points to. Files are opened
with ``O_NOFOLLOW`` on the already resolved path, so a symlink swapped in
after the check is not followed either.

Uploads go to a hidden temporary file in the target directory and are
renamed over the final name only after ``fsync`` (:class:`Upload`); APPE and
REST+STOR write in place, by their meaning. Failures are :class:`FileError`
with a kind the protocol core turns into a reply code.

Every method may block on the disk: the adapter runs them in the disk pool.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from dataclasses import dataclass

from twisted_netapps.fileio import fsync_directory
from twisted_netapps.ftp import listing, paths

TEMP_PREFIX = ".netapps-ftp-"  # uploads in progress: never listed, never addressable
MAX_UNIQUE_TRIES = 100
SMALL_DIRECTORY = 4096  # st_size of a one-block directory (ext4; tmpfs counts ~20 bytes an entry)

NOT_FOUND = "not found"
DENIED = "denied"
NOT_DIRECTORY = "not a directory"
NOT_FILE = "not a regular file"
EXISTS = "exists"
NOT_EMPTY = "not empty"
NO_SPACE = "no space"
BAD_OFFSET = "bad offset"
IO = "i/o error"

_ERRNO_KINDS = {
    errno.ENOENT: NOT_FOUND,
    errno.ENOTDIR: NOT_DIRECTORY,
    errno.EISDIR: NOT_FILE,
    errno.EEXIST: EXISTS,
    errno.ENOTEMPTY: NOT_EMPTY,
    errno.EACCES: DENIED,
    errno.EPERM: DENIED,
    errno.EROFS: DENIED,
    errno.ELOOP: DENIED,
    errno.ENOSPC: NO_SPACE,
    errno.EDQUOT: NO_SPACE,
    errno.EFBIG: NO_SPACE,
    errno.ENAMETOOLONG: NOT_FOUND,
    errno.EXDEV: DENIED,
}


class FileError(Exception):
    """A file operation refused or failed; *kind* is one of this module's constants."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


def _from_os_error(e: OSError, what: str) -> FileError:
    kind = _ERRNO_KINDS.get(e.errno, IO)
    text = {NOT_FOUND: "No such file or directory", DENIED: "Permission denied", IO: "I/O error"}.get(kind, kind.capitalize())
    return FileError(kind, f"{what}: {text}.")


@dataclass(frozen=True)
class Access:
    """What a login may change: everything (*writable*), or, read-only, new
    files in *upload_dir* (a virtual directory; anonymous drop box)."""

    writable: bool
    upload_dir: str | None = None


class Upload:
    """An upload in progress: bytes go to *fd*; :meth:`commit` makes them durable and visible."""

    def __init__(self, fd: int, final: str, temp: str | None) -> None:
        self.fd = fd
        self.final = final
        self.temp = temp  # None: written in place (APPE, REST)

    def write(self, data) -> None:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(self.fd, view):]

    def commit(self) -> None:
        """fsync, rename over the final name (temp uploads), fsync the directory. Blocking."""
        fd, self.fd = self.fd, -1
        try:
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            self._remove_temp()
            raise _from_os_error(e, "upload") from None
        os.close(fd)
        try:
            if self.temp is not None:
                os.rename(self.temp, self.final)
            fsync_directory(os.path.dirname(self.final))
        except OSError as e:
            self._remove_temp()
            raise _from_os_error(e, "upload") from None

    def discard(self) -> None:
        """Drop a broken upload: the temporary file goes (in-place writes stay, by their meaning)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._remove_temp()

    def _remove_temp(self) -> None:
        if self.temp is not None:
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass


class JailedFilesystem:
    """One login's view of the disk below *root* (see the module docstring)."""

    def __init__(self, root, access: Access, clock=time.time) -> None:
        self.root = os.path.realpath(root)
        self.access = access
        self.clock = clock

    # ------------------------------------------------------------ the jail

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def real_path(self, vpath: str) -> str:
        """The disk path of virtual *vpath*, every symlink followed; NOT_FOUND when one leads out of the root.

        Walks the components below the (already real) root with one lstat
        each, following a symlink with ``os.path.realpath`` and checking
        where it lands; the first component that does not exist ends the
        walk (the rest cannot exist either, so cannot be links).
        """
        real = self.root
        parts = [part for part in vpath.split("/") if part]
        for i, part in enumerate(parts):
            if part in (".", ".."):  # never in a normalised path; refuse rather than guess
                raise FileError(NOT_FOUND, f"{vpath}: No such file or directory.")
            candidate = os.path.join(real, part)
            try:
                st = os.lstat(candidate)
            except OSError:
                return os.path.join(candidate, *parts[i + 1:])
            if stat.S_ISLNK(st.st_mode):
                candidate = os.path.realpath(candidate)
                if not self._inside(candidate):
                    raise FileError(NOT_FOUND, f"{vpath}: No such file or directory.")
            real = candidate
        return real

    def entry_path(self, vpath: str) -> str:
        """The disk path of the entry *vpath* itself: its parent resolved, its last component not followed."""
        if vpath == "/":
            raise FileError(DENIED, "/: Permission denied.")
        name = paths.basename(vpath)
        if name.startswith(TEMP_PREFIX):
            raise FileError(NOT_FOUND, f"{vpath}: No such file or directory.")
        return os.path.join(self.real_path(paths.parent(vpath)), name)

    def _stat(self, vpath: str) -> os.stat_result:
        if vpath != "/" and paths.basename(vpath).startswith(TEMP_PREFIX):
            raise FileError(NOT_FOUND, f"{vpath}: No such file or directory.")
        try:
            return os.stat(self.real_path(vpath))
        except OSError as e:
            raise _from_os_error(e, vpath) from None

    def _check_write(self, vpath: str, *, create_only: bool = False) -> None:
        if self.access.writable:
            return
        upload = self.access.upload_dir
        if create_only and upload is not None and paths.parent(vpath) == upload:
            return
        raise FileError(DENIED, f"{vpath}: Permission denied.")

    # ------------------------------------------------------------ queries

    def change_dir(self, vpath: str) -> str:
        """CWD: *vpath* when it is a directory this login may enter."""
        if not stat.S_ISDIR(self._stat(vpath).st_mode):
            raise FileError(NOT_DIRECTORY, f"{vpath}: Not a directory.")
        if not os.access(self.real_path(vpath), os.X_OK):
            raise FileError(DENIED, f"{vpath}: Permission denied.")
        return vpath

    def file_size(self, vpath: str) -> int:
        st = self._stat(vpath)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(NOT_FILE, f"{vpath}: not a regular file.")
        return st.st_size

    def modify_time(self, vpath: str) -> str:
        st = self._stat(vpath)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(NOT_FILE, f"{vpath}: not a regular file.")
        return listing.modify_time(st)

    def facts(self, vpath: str, facts=listing.MLST_FACTS) -> str:
        """MLST: the facts of *vpath* itself, named by its full virtual path."""
        entry = listing.Entry(vpath, self._stat(vpath))
        return listing.facts_line(entry, self.access.writable, facts)

    def entries(self, vpath: str) -> list[listing.Entry]:
        """The listable entries of directory *vpath* (or *vpath* alone if it is a file), sorted by name.

        Symlinks are shown as what they point to when that is inside the
        jail, and not at all otherwise; upload temporaries and names with
        CR/LF (which would break the listing's lines) are left out.
        """
        st = self._stat(vpath)
        if not stat.S_ISDIR(st.st_mode):
            return [listing.Entry(paths.basename(vpath) if vpath != "/" else "/", st)]
        real = self.real_path(vpath)
        result = []
        try:
            with os.scandir(real) as it:
                for item in it:
                    name = item.name
                    if name.startswith(TEMP_PREFIX) or "\n" in name or "\r" in name:
                        continue
                    try:
                        if item.is_symlink():
                            target = os.path.realpath(item.path)
                            if not self._inside(target):
                                continue
                            item_st = os.stat(target)
                        else:
                            item_st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue  # vanished meanwhile, or a dangling link
                    result.append(listing.Entry(name, item_st))
        except OSError as e:
            raise _from_os_error(e, vpath) from None
        result.sort(key=lambda entry: entry.name)
        return result

    def is_small_directory(self, vpath: str) -> bool:
        """True for a directory of one block or less (listing it is a few
        microseconds of work: the adapter does it without a thread hop)."""
        try:
            st = self._stat(vpath)
        except FileError:
            return True  # the listing fails at once, wherever it runs
        return stat.S_ISDIR(st.st_mode) and st.st_size <= SMALL_DIRECTORY

    def listing(self, vpath: str, kind: str, facts=listing.MLST_FACTS) -> bytes:
        """The bytes LIST (``"list"``), NLST (``"nlst"``) or MLSD (``"mlsd"``) sends for *vpath*."""
        if kind == "mlsd" and not stat.S_ISDIR(self._stat(vpath).st_mode):
            raise FileError(NOT_DIRECTORY, f"{vpath}: Not a directory.")
        entries = self.entries(vpath)
        if kind == "list":
            now = self.clock()
            lines = [listing.list_line(e, now) for e in entries]
        elif kind == "nlst":
            lines = [e.name for e in entries]
        else:
            writable = self.access.writable
            lines = [listing.facts_line(e, writable, facts) for e in entries]
        return listing.encode_lines(lines)

    def status_lines(self, vpath: str) -> list[str]:
        """STAT path: the LIST lines, sent over the control connection."""
        now = self.clock()
        return [listing.list_line(e, now) for e in self.entries(vpath)]

    # ------------------------------------------------------------ changes

    def make_dir(self, vpath: str) -> str:
        self._check_write(vpath)
        try:
            os.mkdir(self.entry_path(vpath), 0o755)
        except OSError as e:
            raise _from_os_error(e, vpath) from None
        return vpath

    def remove_dir(self, vpath: str) -> None:
        self._check_write(vpath)
        target = self.entry_path(vpath)
        try:
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                raise FileError(NOT_DIRECTORY, f"{vpath}: Not a directory.")
            os.rmdir(target)
        except OSError as e:
            raise _from_os_error(e, vpath) from None

    def delete(self, vpath: str) -> None:
        self._check_write(vpath)
        target = self.entry_path(vpath)
        try:
            if stat.S_ISDIR(os.lstat(target).st_mode):
                raise FileError(NOT_FILE, f"{vpath}: Is a directory (use RMD).")
            os.unlink(target)
        except OSError as e:
            raise _from_os_error(e, vpath) from None

    def check_exists(self, vpath: str) -> None:
        """RNFR: the entry exists and may be renamed."""
        self._check_write(vpath)
        try:
            os.lstat(self.entry_path(vpath))
        except OSError as e:
            raise _from_os_error(e, vpath) from None

    def rename(self, source: str, target: str) -> None:
        self._check_write(source)
        self._check_write(target)
        old, new = self.entry_path(source), self.entry_path(target)
        try:
            if os.path.isdir(new) and not os.path.islink(new):
                raise FileError(EXISTS, f"{target}: a directory of that name exists.")
            os.rename(old, new)
        except OSError as e:
            raise _from_os_error(e, target) from None

    # ------------------------------------------------------------ transfers

    def open_read(self, vpath: str, offset: int = 0):
        """RETR: (binary file object positioned at *offset*, its size)."""
        real = self.real_path(vpath)
        if vpath != "/" and paths.basename(vpath).startswith(TEMP_PREFIX):
            raise FileError(NOT_FOUND, f"{vpath}: No such file or directory.")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            raise _from_os_error(e, vpath) from None
        handle = os.fdopen(fd, "rb", buffering=0)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            handle.close()
            raise FileError(NOT_FILE, f"{vpath}: not a regular file.")
        if offset > st.st_size:
            handle.close()
            raise FileError(BAD_OFFSET, f"REST offset {offset} is past the end ({st.st_size} bytes).")
        if offset:
            handle.seek(offset)
        return handle, st.st_size

    def open_write(self, vpath: str, mode: str, offset: int = 0) -> Upload:
        """STOR (``"stor"``), APPE (``"appe"``) or STOR after REST (``"rest"``) to *vpath*."""
        self._check_write(vpath, create_only=(mode == "stor"))
        final = self.entry_path(vpath)
        try:
            existing = os.stat(final)
        except FileNotFoundError:
            existing = None
        except OSError as e:
            raise _from_os_error(e, vpath) from None
        if existing is not None:
            if not stat.S_ISREG(existing.st_mode):
                raise FileError(NOT_FILE, f"{vpath}: not a regular file.")
            if not self.access.writable:  # the anonymous drop box never overwrites
                raise FileError(DENIED, f"{vpath}: exists (overwriting is not allowed).")
            final = os.path.realpath(final)  # an in-jail symlink: write its target
            if not self._inside(final):
                raise FileError(NOT_FOUND, f"{vpath}: No such file or directory.")
        if mode == "stor":
            return self._temp_upload(final, vpath)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode == "appe" else 0)
        try:
            fd = os.open(final, flags, 0o644)
        except OSError as e:
            raise _from_os_error(e, vpath) from None
        if mode == "rest":
            size = os.fstat(fd).st_size
            if offset > size:
                os.close(fd)
                raise FileError(BAD_OFFSET, f"REST offset {offset} is past the end ({size} bytes).")
            os.ftruncate(fd, offset)  # resuming: whatever followed the offset is replaced
            os.lseek(fd, offset, os.SEEK_SET)
        return Upload(fd, final, None)

    def unique_name(self, directory: str, hint: str) -> str:
        """STOU: a virtual path in *directory* that does not exist yet, based on *hint*."""
        base = paths.basename(paths.normalize(directory, hint)) if hint else "ftp-upload"
        if base.startswith(TEMP_PREFIX) or base in ("", "/"):
            base = "ftp-upload"
        for n in range(MAX_UNIQUE_TRIES):
            candidate = paths.normalize(directory, base if n == 0 else f"{base}.{n}")
            try:
                os.lstat(self.entry_path(candidate))
            except FileNotFoundError:
                return candidate
            except OSError as e:
                raise _from_os_error(e, candidate) from None
        raise FileError(EXISTS, f"{base}: no unique name found.")

    def _temp_upload(self, final: str, vpath: str) -> Upload:
        directory = os.path.dirname(final)
        temp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}.part")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise _from_os_error(e, vpath) from None
        return Upload(fd, final, temp)
