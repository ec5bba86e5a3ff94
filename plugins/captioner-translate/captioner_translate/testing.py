"""A server that speaks LibreTranslate's HTTP API, for tests on 127.0.0.1.

The public service cannot be reached from tests, so this follows its protocol exactly
(`POST /translate` with JSON `{q, source, target, format, api_key}` answering
`{"translatedText": ...}`, `GET /languages`, `{"error": ...}` with 400/403/500), fed by a
phrase table. `mode` makes it misbehave: "error" (HTTP 500), "hang" (never answers),
"garbage" (not JSON), "missing" (JSON without translatedText).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLibreTranslate:
    def __init__(self, phrases: dict[str, dict[str, str]], api_key: str | None = None, mode: str = "ok"):
        self.phrases = phrases  # target -> source text -> translation
        self.api_key = api_key
        self.mode = mode
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/languages":
                    return self._send(404, b'{"error": "Not Found"}')
                targets = sorted(server.phrases)
                languages = [{"code": "en", "name": "English", "targets": targets}] + [
                    {"code": code, "name": code, "targets": ["en"]} for code in targets
                ]
                self._send(200, json.dumps(languages).encode())

            def do_POST(self):
                if self.path != "/translate":
                    return self._send(404, b'{"error": "Not Found"}')
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return self._send(400, b'{"error": "Invalid request: bad JSON"}')
                server.requests.append(body)
                if server.mode == "hang":
                    time.sleep(3600)
                if server.mode == "error":
                    return self._send(500, b'{"error": "Internal server error"}')
                if server.mode == "garbage":
                    return self._send(200, b"<html>upstream proxy error</html>", "text/html")
                if server.mode == "missing":
                    return self._send(200, b'{"detectedLanguage": {"language": "en"}}')
                if server.api_key and body.get("api_key") != server.api_key:
                    return self._send(403, b'{"error": "Invalid API key"}')
                for field in ("q", "source", "target"):
                    if not body.get(field):
                        return self._send(400, json.dumps({"error": f"Invalid request: missing {field} parameter"}).encode())
                table = server.phrases.get(body["target"])
                if table is None:
                    return self._send(400, json.dumps({"error": f"{body['target']} is not supported"}).encode())
                text = table.get(body["q"], f"[{body['target']}] {body['q']}")
                self._send(200, json.dumps({"translatedText": text}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeLibreTranslate:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
