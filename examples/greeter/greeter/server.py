"""The greeter's HTTP API, on the standard library's http.server.

    GET /greet?name=Ada  ->  200 {"message": "Hello, Ada!"}
    GET /health          ->  200 {"status": "ok"}

Run it with ``python3 -m greeter.server [--host HOST] [--port PORT]``. It listens on
127.0.0.1 unless told otherwise; in the pipeline's service it listens on 0.0.0.0 so that the
other containers of the build network can reach it as ``api``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from greeter.greeting import greet


class GreeterHandler(BaseHTTPRequestHandler):
    server_version = "greeter/1.0"

    def do_GET(self) -> None:  # the name http.server calls for a GET request
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif url.path == "/greet":
            name = parse_qs(url.query).get("name", [""])[0]
            try:
                self._send_json(200, {"message": greet(name)})
            except ValueError as exc:
                self._send_json(400, {"error": str(exc)})
        else:
            self._send_json(404, {"error": f"no such path: {url.path}"})

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A server bound to (host, port), not yet serving; port 0 picks a free port."""
    return ThreadingHTTPServer((host, port), GreeterHandler)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the greeter API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    args = parser.parse_args(argv)

    server = make_server(args.host, args.port)
    signal.signal(signal.SIGTERM, _stop)  # `docker stop` sends SIGTERM: shut down cleanly
    host, port = server.server_address[:2]
    print(f"greeter listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("greeter stopping", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
