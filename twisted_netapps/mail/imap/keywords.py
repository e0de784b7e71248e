"""IMAP flags on Maildir: system flags as Maildir letters, keywords the Dovecot way.

- System flags are the Maildir info letters of
  :data:`twisted_netapps.mail.store.mailbox.FLAG_LETTERS` (``S`` \\Seen,
  ``T`` \\Deleted..., and ``P`` for ``$Forwarded``).
- Keywords (``$Junk``, ``$label1``, ``NonJunk``: what Thunderbird and mutt
  set) are the lower-case letters ``a``-``z`` in the same info part
  (``cur/<unique>:2,Sab``). The folder's ``dovecot-keywords`` file says which
  keyword each letter stands for, one ``<index> <keyword>`` line per letter
  (``0`` is ``a``). That is Dovecot's own file name and format, so Dovecot
  pointed at the same Maildir sees the same keywords. The file is rewritten
  atomically and durably (temp file, fsync, rename) *before* a message is
  renamed to carry a new letter, so a letter on disk always has its keyword.
- 26 letters: a folder holds at most 26 distinct keywords; once full,
  ``PERMANENTFLAGS`` no longer lists ``\\*`` and a new keyword is refused.

Keywords compare case-insensitively (RFC 3501 2.3.2). No Twisted here;
:meth:`KeywordMap.allocate` writes a file (call it from a thread).
"""

from __future__ import annotations

import string
from pathlib import Path

from twisted_netapps.fileio import write_atomically
from twisted_netapps.mail.store.mailbox import FLAG_LETTERS, LETTER_FLAGS

KEYWORDS_FILE = "dovecot-keywords"
LETTERS = string.ascii_lowercase
MAX_KEYWORD_LENGTH = 200
SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "$Forwarded"]
_SYSTEM = {flag.lower(): letter for flag, letter in FLAG_LETTERS.items()}


class FlagError(ValueError):
    """A flag that cannot be stored: a made-up system flag (BAD), or no letter left (NO [LIMIT])."""

    def __init__(self, message: str, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


class KeywordMap:
    """One folder's keyword letters (``dovecot-keywords``)."""

    def __init__(self, folder_path: Path) -> None:
        self.path = Path(folder_path) / KEYWORDS_FILE
        self.names: list[str | None] = [None] * len(LETTERS)
        self._by_name: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return
        names: list[str | None] = [None] * len(LETTERS)
        for line in text.splitlines():
            index, _, name = line.partition(" ")
            if index.isdigit() and int(index) < len(LETTERS) and _valid_keyword(name):
                names[int(index)] = name
        self._install(names)

    def _install(self, names: list[str | None]) -> None:
        self.names = names
        self._by_name = {n.lower(): LETTERS[i] for i, n in enumerate(names) if n is not None}

    @property
    def full(self) -> bool:
        return all(n is not None for n in self.names)

    def keywords(self) -> list[str]:
        return [n for n in self.names if n is not None]

    def letter(self, keyword: str) -> str | None:
        return self._by_name.get(keyword.lower())

    def name(self, letter: str) -> str | None:
        index = LETTERS.find(letter)
        return self.names[index] if index >= 0 else None

    def allocate(self, keywords: list[str]) -> None:
        """Give each of *keywords* a letter, writing the file once (blocking). FlagError if full."""
        wanted = [k for k in dict.fromkeys(keywords) if self.letter(k) is None]
        if not wanted:
            return
        names = list(self.names)
        for keyword in wanted:
            try:
                index = names.index(None)
            except ValueError:
                raise FlagError("no more keywords in this mailbox (26 at most)", limit=True) from None
            names[index] = keyword
        body = "".join(f"{i} {n}\n" for i, n in enumerate(names) if n is not None)
        write_atomically(self.path, body.encode("utf-8"))
        self._install(names)


def _valid_keyword(name: str) -> bool:
    return 0 < len(name) <= MAX_KEYWORD_LENGTH and not name.startswith("\\") and all(
        0x21 <= ord(c) <= 0x7E and c not in '(){%*"\\]' for c in name
    )


def split_flags(flags) -> tuple[str, list[str]]:
    """IMAP flags (bytes or str) -> (system letters, keywords); \\Recent is dropped (not storable).

    Raises FlagError for an unknown system flag such as ``\\Foo``.
    """
    letters: set[str] = set()
    keywords: list[str] = []
    for flag in flags:
        name = flag.decode("ascii", "replace") if isinstance(flag, bytes) else flag
        lower = name.lower()
        if lower in _SYSTEM:
            letters.add(_SYSTEM[lower])
        elif lower == "\\recent":
            continue
        elif name.startswith("\\"):
            raise FlagError(f"{name} is not a system flag")
        elif _valid_keyword(name):
            if lower not in (k.lower() for k in keywords):
                keywords.append(name)
        else:
            raise FlagError(f"{name!r} cannot be a keyword")
    return "".join(sorted(letters)), keywords


def letters_for(system: str, keywords: list[str], keymap: KeywordMap) -> str:
    """The Maildir info letters of system letters + keywords (already allocated)."""
    letters = set(system)
    for keyword in keywords:
        letter = keymap.letter(keyword)
        if letter is not None:
            letters.add(letter)
    return "".join(sorted(letters))


def flag_names(letters: str, keymap: KeywordMap) -> list[str]:
    """IMAP flags of Maildir info *letters* (letters without a keyword are not shown)."""
    out = []
    for letter in letters:
        if letter in LETTER_FLAGS:
            out.append(LETTER_FLAGS[letter])
        elif "a" <= letter <= "z":
            name = keymap.name(letter)
            if name is not None:
                out.append(name)
    return out
