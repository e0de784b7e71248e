"""FTP server (RFC 959 with RFC 2228/4217 FTPS, 2389 FEAT, 2428 EPSV/EPRT, 2640 UTF-8, 3659 MLST/SIZE/MDTM/REST).

Layers, imports flowing one way: :mod:`commands`/:mod:`replies` (codec) ->
:mod:`paths` (virtual paths) -> :mod:`session` (the sans-I/O control
connection) and :mod:`filesystem`/:mod:`listing` (the jailed storage) ->
:mod:`data`/:mod:`transfer`/:mod:`zerocopy`/:mod:`protocol` (Twisted) ->
:mod:`service`.
"""
