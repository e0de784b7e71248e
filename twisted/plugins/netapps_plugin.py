"""Twisted plugin: makes ``twistd netapps`` available.

Kept thin and lazy on purpose: ``ServiceMaker`` resolves ``twisted_netapps.tap``
only when the ``netapps`` subcommand is used, so ``twistd --help`` imports none
of the applications.
"""

from twisted.application.service import ServiceMaker

netapps = ServiceMaker(
    "twisted-netapps",
    "twisted_netapps.tap",
    # No list of services here: the plugin must not import the package, and a
    # list written by hand advertised services before they existed.
    "The classic Internet applications in one daemon ('twistd netapps --help' lists this version's services).",
    "netapps",
)
