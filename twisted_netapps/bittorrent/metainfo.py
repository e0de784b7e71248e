"""Metainfo (BEP 3 v1, BEP 12 announce-list), magnet links (BEP 9), torrent creation.

The info-hash is the SHA-1 of the ``info`` dictionary's bytes exactly as they
appear in the file (never of a re-encoding). File paths from a torrent are
sanitised: a component that is empty, ``.`` or ``..``, or that holds a path
separator, NUL or control characters, is refused or neutralised, so no
torrent can write outside its download directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from twisted_netapps.bittorrent import bencode

KiB = 1024
MiB = 1024 * KiB
BLOCK_SIZE = 16 * KiB
DEFAULT_PIECE_LENGTH = 256 * KiB  # the seeds' chunk size
MAX_PIECES_BEFORE_GROWING = 2048
MAX_TORRENT_FILE = 16 * MiB
MAX_FILES = 100_000
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


class MetainfoError(ValueError):
    """A torrent file, magnet link or creation request that cannot be used."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a torrent: its sanitised relative path and where it lies in the byte stream."""

    path: tuple[str, ...]  # relative to the download dir, the torrent's name first
    length: int
    offset: int


@dataclass(frozen=True)
class Metainfo:
    info_hash: bytes
    name: str
    piece_length: int
    piece_hashes: bytes  # 20 bytes per piece, concatenated
    files: tuple[FileEntry, ...]
    total_length: int
    multi_file: bool
    announce: str | None = None
    announce_list: tuple[tuple[str, ...], ...] = ()
    private: bool = False
    comment: str = ""
    info_bytes: bytes = field(default=b"", repr=False)

    @property
    def piece_count(self) -> int:
        return len(self.piece_hashes) // 20

    def piece_size(self, index: int) -> int:
        if index == self.piece_count - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def piece_hash(self, index: int) -> bytes:
        return self.piece_hashes[index * 20:index * 20 + 20]

    @property
    def tiers(self) -> list[list[str]]:
        """Tracker tiers (BEP 12): announce-list if present, else announce."""
        if self.announce_list:
            return [list(t) for t in self.announce_list]
        return [[self.announce]] if self.announce else []

    @property
    def trackers(self) -> list[str]:
        return [url for tier in self.tiers for url in tier]

    def magnet(self) -> str:
        return magnet_link(self.info_hash, self.name, self.trackers)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, bytes):
        raise MetainfoError(f"{what} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or value < minimum:
        raise MetainfoError(f"{what} is not an integer >= {minimum}")
    return value


def safe_component(raw: bytes | str, what: str) -> str:
    """A path component from a torrent made safe to use under the download dir."""
    if isinstance(raw, str):
        name = raw
    else:
        name = _text(raw, what)  # bytes from the torrent, or a MetainfoError
    if name in ("", ".", ".."):
        raise MetainfoError(f"{what}: unsafe path component {name!r}")
    return _UNSAFE_CHARS.sub("_", name)


def parse(data: bytes) -> Metainfo:
    """Parse a ``.torrent`` file's bytes; :class:`MetainfoError` if unusable."""
    if len(data) > MAX_TORRENT_FILE:
        raise MetainfoError("torrent file too large")
    try:
        top, span = bencode.decode_with_info_span(data)
    except bencode.BencodeError as e:
        raise MetainfoError(f"not bencoded: {e}") from None
    if not isinstance(top, dict) or span is None:
        raise MetainfoError("no info dictionary")
    info_bytes = data[span[0]:span[1]]
    meta = parse_info(info_bytes, top[b"info"])
    announce = _text(top[b"announce"], "announce") if b"announce" in top else None
    tiers: list[tuple[str, ...]] = []
    raw_list = top.get(b"announce-list", [])
    if isinstance(raw_list, list):
        for tier in raw_list:
            if isinstance(tier, list):
                urls = tuple(_text(u, "announce-list url") for u in tier if isinstance(u, bytes))
                if urls:
                    tiers.append(urls)
    comment = _text(top[b"comment"], "comment") if isinstance(top.get(b"comment"), bytes) else ""
    return Metainfo(
        **{**meta.__dict__, "announce": announce, "announce_list": tuple(tiers), "comment": comment}
    )


def parse_info(info_bytes: bytes, info: Any = None) -> Metainfo:
    """A :class:`Metainfo` (without trackers) from the bencoded info dictionary."""
    if info is None:
        try:
            info = bencode.decode(info_bytes)
        except bencode.BencodeError as e:
            raise MetainfoError(f"info: {e}") from None
    if not isinstance(info, dict):
        raise MetainfoError("info is not a dictionary")
    try:
        name = safe_component(info[b"name"], "info.name")
        piece_length = _int(info[b"piece length"], "info.piece length", 1)
        pieces = info[b"pieces"]
    except KeyError as e:
        raise MetainfoError(f"info has no {e.args[0].decode()!r}") from None
    if not isinstance(pieces, bytes) or len(pieces) % 20:
        raise MetainfoError("info.pieces is not a multiple of 20 bytes")
    files: list[FileEntry] = []
    offset = 0
    if b"files" in info:
        raw_files = info[b"files"]
        if not isinstance(raw_files, list) or not raw_files or len(raw_files) > MAX_FILES:
            raise MetainfoError("info.files is not a non-empty list")
        for i, entry in enumerate(raw_files):
            if not isinstance(entry, dict):
                raise MetainfoError(f"info.files[{i}] is not a dictionary")
            length = _int(entry.get(b"length"), f"info.files[{i}].length")
            raw_path = entry.get(b"path.utf-8", entry.get(b"path"))
            if not isinstance(raw_path, list) or not raw_path:
                raise MetainfoError(f"info.files[{i}].path is not a non-empty list")
            parts = tuple(safe_component(p, f"info.files[{i}].path") for p in raw_path)
            files.append(FileEntry((name, *parts), length, offset))
            offset += length
        multi = True
    else:
        length = _int(info.get(b"length"), "info.length")
        files.append(FileEntry((name,), length, 0))
        offset = length
        multi = False
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise MetainfoError("two files with the same path")
    count = len(pieces) // 20
    if count != math.ceil(offset / piece_length) and not (offset == 0 and count == 0):
        raise MetainfoError(f"{count} piece hashes for {offset} bytes in pieces of {piece_length}")
    private = info.get(b"private") == 1
    return Metainfo(
        info_hash=hashlib.sha1(info_bytes).digest(),
        name=name,
        piece_length=piece_length,
        piece_hashes=pieces,
        files=tuple(files),
        total_length=offset,
        multi_file=multi,
        private=private,
        info_bytes=bytes(info_bytes),
    )


def load(path: str | os.PathLike) -> Metainfo:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TORRENT_FILE + 1)
    except OSError as e:
        raise MetainfoError(f"{path}: {e.strerror}") from None
    return parse(data)


# -- magnet links ------------------------------------------------------------

def magnet_link(info_hash: bytes, name: str | None = None, trackers: list[str] = ()) -> str:
    parts = [f"xt=urn:btih:{info_hash.hex()}"]
    if name:
        parts.append("dn=" + urllib.parse.quote(name, safe=""))
    parts += ["tr=" + urllib.parse.quote(t, safe="") for t in trackers]
    return "magnet:?" + "&".join(parts)


@dataclass(frozen=True)
class Magnet:
    info_hash: bytes
    name: str | None
    trackers: tuple[str, ...]


def parse_magnet(uri: str) -> Magnet:
    """``magnet:?xt=urn:btih:<40 hex or 32 base32>&dn=...&tr=...``."""
    if not uri.startswith("magnet:?"):
        raise MetainfoError("not a magnet link")
    query = urllib.parse.parse_qs(uri[len("magnet:?"):], keep_blank_values=True)
    info_hash = None
    for xt in query.get("xt", []):
        if xt.lower().startswith("urn:btih:"):
            value = xt[len("urn:btih:"):]
            try:
                if len(value) == 40:
                    info_hash = bytes.fromhex(value)
                elif len(value) == 32:
                    info_hash = base64.b32decode(value.upper())
            except (ValueError, binascii.Error):
                info_hash = None
    if info_hash is None:
        raise MetainfoError("magnet link has no urn:btih: info-hash")
    names = query.get("dn")
    return Magnet(info_hash, names[0] if names else None, tuple(query.get("tr", [])))


# -- creation ------------------------------------------------------------------

def default_piece_length(total: int) -> int:
    """256 KiB (the seeds' chunk), doubled while that would make over 2048 pieces."""
    length = DEFAULT_PIECE_LENGTH
    while total / length > MAX_PIECES_BEFORE_GROWING and length < 16 * MiB:
        length *= 2
    return length


def _walk(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = sorted(
        (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()),
        key=lambda p: p.relative_to(root).parts,
    )
    if not found:
        raise MetainfoError(f"{root}: no files")
    return found


def _piece_hashes(paths: list[Path], piece_length: int) -> Iterator[bytes]:
    buffer = bytearray()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(max(piece_length, MiB)):
                buffer += chunk
                while len(buffer) >= piece_length:
                    yield hashlib.sha1(buffer[:piece_length]).digest()
                    del buffer[:piece_length]
    if buffer:
        yield hashlib.sha1(buffer).digest()


def create(
    path: str | os.PathLike,
    *,
    piece_length: int | None = None,
    trackers: list[str] = (),
    comment: str = "",
    private: bool = False,
    created_by: str = "twisted-netapps",
) -> bytes:
    """The bytes of a ``.torrent`` for the file or directory *path*.

    Several *trackers* become one tier each in ``announce-list`` (the first is
    also ``announce``).
    """
    root = Path(path)
    if not root.exists():
        raise MetainfoError(f"{root}: no such file or directory")
    paths = _walk(root)
    total = sum(p.stat().st_size for p in paths)
    if piece_length is None:
        piece_length = default_piece_length(total)
    if piece_length < BLOCK_SIZE or piece_length & (piece_length - 1):
        raise MetainfoError("piece length must be a power of two of at least 16 KiB")
    info: dict[str, Any] = {
        "name": root.name,
        "piece length": piece_length,
        "pieces": b"".join(_piece_hashes(paths, piece_length)),
    }
    if root.is_file():
        info["length"] = total
    else:
        info["files"] = [
            {"length": p.stat().st_size, "path": list(p.relative_to(root).parts)} for p in paths
        ]
    if private:
        info["private"] = 1
    top: dict[str, Any] = {"info": info, "created by": created_by, "creation date": int(time.time())}
    if trackers:
        top["announce"] = trackers[0]
        if len(trackers) > 1:
            top["announce-list"] = [[t] for t in trackers]
    if comment:
        top["comment"] = comment
    return bencode.encode(top)
