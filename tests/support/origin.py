"""A scripted HTTP origin on loopback, run as its own process: what outbound fetches meet.

    python -m tests.support.origin PORT

Routes (GET):
    /image.png                 a small PNG
    /echo-host                 the Host header it was sent, as text
    /redirect/N                N redirects: 302 to /redirect/N-1, /redirect/1 to /image.png
    /redirect-to?url=U         302 to U
    /drip                      declares 1000 bytes, then sends one byte every 0.2 s
    /endless                   no length, sends zeros until the client goes away
    /html-as-png               an HTML page labelled image/png
    /bmp-as-png                a BMP image labelled image/png
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from devenv.run.proc import free_port, http_ok, spawn, stop, wait_until

DRIP_INTERVAL_S = 0.2
DRIP_MAX_S = 60.0  # bounded, whatever the client does
ENDLESS_MAX_BYTES = 2 * 1024**3
HTML = b"<!doctype html><html><body>not an image</body></html>"


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((64, 48)).convert("RGB").save(out, fmt)
    return out.getvalue()


PNG = _image("PNG")
BMP = _image("BMP")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/image.png":
            self._send(200, PNG, "image/png")
        elif path == "/echo-host":
            self._send(200, self.headers.get("Host", "").encode(), "text/plain")
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self._redirect("/image.png" if left <= 1 else f"/redirect/{left - 1}")
        elif path == "/redirect-to":
            self._redirect(query["url"][0])
        elif path == "/drip":
            self._drip()
        elif path == "/endless":
            self._endless()
        elif path == "/html-as-png":
            self._send(200, HTML, "image/png")
        elif path == "/bmp-as-png":
            self._send(200, BMP, "image/png")
        else:
            self._send(404, b"no such route", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        deadline = time.monotonic() + DRIP_MAX_S
        try:
            while time.monotonic() < deadline:
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(DRIP_INTERVAL_S)
        except OSError:
            return  # the client gave up: what it should do

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        chunk = b"\0" * 65536
        try:
            for _ in range(ENDLESS_MAX_BYTES // len(chunk)):
                self.wfile.write(chunk)
        except OSError:
            return


@contextmanager
def origin_server(log: str) -> Iterator[str]:
    """The origin as a real process on a free loopback port; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = spawn(
        [sys.executable, "-m", "tests.support.origin", str(port)],
        env=dict(os.environ),
        log_path=log,
    )
    try:
        wait_until(http_ok(f"{base}/image.png"), timeout=30, what="origin server", proc=proc)
        yield base
    finally:
        stop(proc, grace=5)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
