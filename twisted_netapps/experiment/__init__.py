"""``netapps experiment distribution``: the seeds' client-server vs P2P distribution time, measured.

bounds.py (the formulas) and units.py (sizes and rates as people write them) are
pure; runner.py drives our own services (web or ftp with a capped upload, the
tracker and bittorrent peers) on loopback; results.py writes the table, CSV,
JSON and the plot.
"""
