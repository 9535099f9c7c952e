"""Is a URL that came from the network fit to open in a browser or show as a link?

Pure: a server's home pages, alert action URLs and the like reach ``webbrowser.open``
or a UI only through :func:`safe_link`: ``http``/``https`` with a host, printable ASCII
with no spaces or control characters, at most ``MAX_LENGTH`` characters. Anything else
(``file:``, ``javascript:``, an application's own scheme, terminal escapes) is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_LENGTH = 2048
SCHEMES = frozenset({"http", "https"})


def safe_link(url: object) -> str | None:
    """``url`` unchanged when it is safe to open or show as a link, else None."""
    if not isinstance(url, str) or not url or len(url) > MAX_LENGTH:
        return None
    if any(not 0x21 <= ord(c) <= 0x7E for c in url):  # controls, spaces, DEL, non-ASCII (IDN homographs)
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        return None
    return url
