"""Mail: the ``smtp`` server with its queue and relay, and ``pop3``/``imap`` access, over Maildir++."""
