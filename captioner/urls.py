"""URLs as users see them: with secrets masked, short enough for an error line."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_QUERY_KEYS = frozenset({"token", "api_key", "key", "authorization"})


def redact_url(url: str) -> str:
    """The URL with secrets (a token in the query, a password) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = [
        (key, "***" if key.lower() in SECRET_QUERY_KEYS else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries (a password, a token in the query): what redact_url masks."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    found += [value for key, value in parse_qsl(parts.query) if key.lower() in SECRET_QUERY_KEYS and value]
    return found


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def is_local(url: str) -> bool:
    """Whether the URL points at this machine (loopback)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address (IPv6 with or without brackets) is this machine."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
