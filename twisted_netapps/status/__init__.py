"""The ``status`` service: a live page, JSON API and Prometheus metrics for every running service.

overview.py (pure: snapshots -> the overview document) -> live.py (the Server-Sent
Events hub) -> web.py (twisted.web resources, login for non-loopback peers) ->
service.py. The page itself is ``page/`` (plain HTML, one small script, no build
step, no CDN). Services plug in through ``context.recent`` and ``context.views``
(:mod:`twisted_netapps.observe`) and their ``COUNTERS``; nothing here names them.
"""
