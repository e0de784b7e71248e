"""Directory listings and file facts as FTP sends them: LIST (``ls -l``), NLST, MLSD/MLST, MDTM.

Pure formatting from ``os.stat_result``s; the storage layer
(:mod:`twisted_netapps.ftp.filesystem`) gathers them. Owner and group are
always shown as ``ftp`` (vsftpd's ``hide_ids``): no user database lookups, and
no host account names leaked. Dates are UTC, month names fixed (never the
process locale).
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SIX_MONTHS = 182 * 24 * 3600

# RFC 3659 7.8: the facts we offer, and the default set (all of them).
MLST_FACTS = ("type", "size", "modify", "perm", "unique")


@dataclass(frozen=True, slots=True)
class Entry:
    """A directory entry as it will be listed: symlinks already followed (inside the jail)."""

    name: str
    st: object  # os.stat_result


def list_line(entry: Entry, now: float) -> str:
    """One ``ls -l`` style line, as LIST sends and every client parses."""
    st = entry.st
    t = time.gmtime(st.st_mtime)
    if abs(now - st.st_mtime) < _SIX_MONTHS:
        date = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}"
    else:
        date = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d}  {t.tm_year}"
    return f"{stat.filemode(st.st_mode)} {st.st_nlink:3d} ftp      ftp      {st.st_size:12d} {date} {entry.name}"


def modify_time(st) -> str:
    """``YYYYMMDDHHMMSS`` in UTC (MDTM's reply, MLST's modify fact)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(st.st_mtime))


def perm_fact(st, writable: bool) -> str:
    """RFC 3659 7.5.5 perm fact: what this user may do with the object."""
    if stat.S_ISDIR(st.st_mode):
        return "elcmpfd" if writable else "el"
    return "radfw" if writable else "r"


def facts_line(entry: Entry, writable: bool, facts=MLST_FACTS, type_name: str | None = None) -> str:
    """``type=file;size=3;modify=...;perm=r;unique=...; name`` (RFC 3659 7.2)."""
    st = entry.st
    values = {
        "type": type_name or ("dir" if stat.S_ISDIR(st.st_mode) else "file"),
        "size": str(st.st_size),
        "modify": modify_time(st),
        "perm": perm_fact(st, writable),
        "unique": f"{st.st_dev:x}g{st.st_ino:x}",
    }
    return "".join(f"{name}={values[name]};" for name in facts) + " " + entry.name


def encode_lines(lines: list[str]) -> bytes:
    """Listing lines -> CRLF-terminated bytes (names back to their on-disk bytes)."""
    return b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines)
