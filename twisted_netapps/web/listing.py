"""Generated directory listings (when a directory has no index file).

Blocking (it lists a directory), bounded by *max_entries*; every name is
HTML-escaped in the text and percent-encoded in the link, so a file called
``<script>.html`` or ``a"b`` is shown as itself and never becomes markup.
"""

from __future__ import annotations

import html
import os
import stat
import time
from urllib.parse import quote


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render_listing(fs_path: str, url_path: str, max_entries: int = 5000) -> bytes:
    """HTML listing of *fs_path*, shown as *url_path* (which ends in "/")."""
    rows = []
    truncated = False
    with os.scandir(fs_path) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden, as the server refuses to serve them
            if len(rows) >= max_entries:
                truncated = True
                break
            try:
                st = entry.stat()
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            rows.append((not is_dir, entry.name, is_dir, st.st_size, st.st_mtime))
    rows.sort()
    title = html.escape(f"Index of {url_path}")
    lines = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{title}</title></head>',
        f"<body><h1>{title}</h1>",
        "<table><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>",
    ]
    if url_path != "/":
        lines.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for _order, name, is_dir, size, mtime in rows:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") + ("/" if is_dir else "")
        href = quote(os.fsencode(name)) + ("/" if is_dir else "")
        modified = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
        lines.append(
            f'<tr><td><a href="{html.escape(href)}">{html.escape(shown)}</a></td>'
            f"<td>{'-' if is_dir else _size(size)}</td><td>{modified}</td></tr>"
        )
    lines.append("</table>")
    if truncated:
        lines.append(f"<p>(only the first {max_entries} entries are shown)</p>")
    lines.append("</body></html>\n")
    return "\n".join(lines).encode("utf-8")
