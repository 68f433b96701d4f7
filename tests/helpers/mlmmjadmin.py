"""A stand-in mlmmjadmin API: a stdlib HTTP server on a thread answering ``has_subscriber``.

    api = MlmmjadminStub(token="secret", subscribers={("list@example.com", "user@example.com")}).start()
    api.endpoint            # 'http://127.0.0.1:<port>/api', for mlmmjadmin_api_endpoint
    api.requests            # (path, token header) of every request received
    api.hang.set()          # every later request waits until api.hang is cleared (or the stub stops)
    api.stop()

``GET /api/<list>/has_subscriber/<address>`` answers ``{"_success": true}`` for a listed pair
with the right token in ``X-MLMMJADMIN-API-AUTH-TOKEN``, else ``{"_success": false, ...}``
(HTTP 200, as mlmmjadmin does).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEADER = "X-MLMMJADMIN-API-AUTH-TOKEN"


class MlmmjadminStub:
    def __init__(self, token: str, subscribers: set[tuple[str, str]]):
        self.token = token
        self.subscribers = subscribers
        self.requests: list[tuple[str, str | None]] = []
        self.hang = threading.Event()
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                stub.requests.append((self.path, self.headers.get(HEADER)))
                while stub.hang.is_set() and not stub._stopping.wait(0.05):
                    pass
                parts = [urllib.parse.unquote(p) for p in self.path.split("/")]
                ok = (
                    len(parts) == 5
                    and parts[1] == "api"
                    and parts[3] == "has_subscriber"
                    and self.headers.get(HEADER) == stub.token
                    and (parts[2], parts[4]) in stub.subscribers
                )
                body = json.dumps({"_success": True} if ok else {"_success": False, "_msg": "NOT_SUBSCRIBED"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def start(self) -> "MlmmjadminStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
