"""IMAP4rev1 over the accounts' Maildir++ folders.

Layers, imports flowing one way (codec -> core/storage -> adapter -> service):

- codec: :mod:`.mutf7` (modified UTF-7 names), :mod:`.syntax` (tokens,
  sequence sets, reply strings), :mod:`.fetchspec` (FETCH items),
  :mod:`.commands` (one typed request per command);
- sans-I/O core: :mod:`.events` and :mod:`.core` (framing with literals,
  the state machine, the commands that need no storage);
- storage: :mod:`.keywords` (flags and Dovecot-style keywords),
  :mod:`.mailbox` (folder state, views, UIDs, \\Recent; disk work in the
  thread pool), :mod:`.account` (folders, realm), :mod:`.mime`,
  :mod:`.structure`, :mod:`.search`;
- session: :mod:`.session` and :mod:`.selected` (carry out the core's
  requests), :mod:`.fetch` (FETCH responses);
- adapter: :mod:`.protocol` (Twisted), and :mod:`.service` (settings, build).
"""
