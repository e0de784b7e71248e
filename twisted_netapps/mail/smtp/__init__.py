"""SMTP: the ESMTP server (core -> protocol -> service), local delivery and the MX relay."""
