"""Twisted plugin: makes ``twistd netapps`` available.

Kept thin and lazy on purpose: ``ServiceMaker`` resolves ``twisted_netapps.tap``
only when the ``netapps`` subcommand is used, so ``twistd --help`` imports none
of the applications.
"""

from twisted.application.service import ServiceMaker

netapps = ServiceMaker(
    "twisted-netapps",
    "twisted_netapps.tap",
    "The classic Internet applications (uppercase, DNS, mail, web, FTP, BitTorrent) in one daemon.",
    "netapps",
)
