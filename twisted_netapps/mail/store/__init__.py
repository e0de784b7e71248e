"""Mail storage shared by smtp, pop3 and imap: Maildir folders, the durable queue, fsync'd commits.

No protocol code here: the protocol packages import the store, never the other way round.
"""
