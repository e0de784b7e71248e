"""IMAP4rev1 on twisted.mail.imap4: Maildir-backed mailboxes, SEARCH, MIME structure, the service builder."""
