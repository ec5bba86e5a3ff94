"""Temporary tokens (GET /v3/token), made with the API key for a browser or a shared machine."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..errors import AuthError, ConnectionFailed
from ..urls import redact_url
from .settings import Secret


def create_token(streaming_url: str, key: Secret, expires: int) -> str:
    """GET <host>/v3/token?expires_in_seconds=N with the key, as the official SDK does."""
    parts = urlsplit(streaming_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    url = urlunsplit((scheme, parts.netloc, "/v3/token", urlencode({"expires_in_seconds": expires}), ""))
    where = redact_url(urlunsplit((scheme, parts.netloc, "/v3/token", "", "")))
    request = urllib.request.Request(url, headers={"Authorization": key.reveal()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise AuthError(f"{where} refused the API key (HTTP {error.code}); check ASSEMBLYAI_API_KEY") from None
        raise ConnectionFailed(f"{where} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionFailed(f"cannot reach {where}: {reason}") from None
    except ValueError:
        raise ConnectionFailed(f"{where} answered something that is not JSON") from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ConnectionFailed(f"{where} answered without a token")
    return token
