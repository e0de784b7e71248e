"""twisted-netapps: the classic Internet applications in one Twisted daemon."""

__version__ = "0.1.0"
