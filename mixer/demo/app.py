"""The sample application: frontend -> catalog -> reviews (v1 and v2), plain HTTP servers on loopback.

Each service is reached only through Envoy sidecars: a service calls its callee on its own sidecar's
outbound port. Errors are deterministic so the numbers a test sees follow from the calls it made:
reviews-v2 answers every 5th request with 503, ``/items/missing`` is 404 at catalog.
"""

from __future__ import annotations

import itertools
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path) -> (status, body)
Behaviour = Callable[[str], tuple[int, bytes]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # Without TCP_NODELAY every response waits for the peer's delayed ACK (~40 ms).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


class Service:
    """One service instance: an HTTP server on 127.0.0.1 answering with ``behaviour``."""

    def __init__(self, name: str, behaviour: Behaviour, port: int = 0) -> None:
        self.name = name
        self._behaviour = behaviour

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                status, body = behaviour(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return None

        self._server = _Server(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"app-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def call(port: int, path: str, timeout: float = 5.0) -> int:
    """GET 127.0.0.1:port/path; the HTTP status (599 when nothing answered)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 599


def frontend(catalog_port: Callable[[], int]) -> Behaviour:
    """Pages call the catalog; the catalog's status passes through (a 403 stays a 403)."""

    def behave(path: str) -> tuple[int, bytes]:
        status = call(catalog_port(), path if path.startswith(("/items", "/admin")) else "/items")
        return (200, b"page\n") if status == 200 else (status, b"catalog said %d\n" % status)

    return behave


def catalog(review_ports: Callable[[], Sequence[int]]) -> Behaviour:
    """Items ask reviews, round-robin over the versions (each has its own outbound port)."""
    turn = itertools.count()

    def behave(path: str) -> tuple[int, bytes]:
        if path.startswith("/items/missing"):
            return 404, b"no such item\n"
        if path.startswith("/admin"):
            return 200, b"admin\n"  # the policy denies it at catalog's sidecar before it gets here
        ports = review_ports()
        status = call(ports[next(turn) % len(ports)], "/reviews")
        return (200, b"item\n") if status == 200 else (502, b"reviews failed\n")

    return behave


def reviews(version: str, fail_every: int = 0) -> Behaviour:
    """Reviews; with ``fail_every`` N, every Nth request is a 503."""
    counter = itertools.count(1)
    lock = threading.Lock()

    def behave(path: str) -> tuple[int, bytes]:
        with lock:
            n = next(counter)
        if fail_every and n % fail_every == 0:
            return 503, b"overloaded\n"
        return 200, f"reviews {version}\n".encode()

    return behave


def main(argv: Sequence[str] | None = None) -> int:
    """One demo service in the foreground, for a container beside its sidecar (deploy/compose.yaml):
    ``python -m mixer.demo.app reviews --version v2 --fail-every 5 --port 8080``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mixer.demo.app", description=main.__doc__)
    parser.add_argument("service", choices=["frontend", "catalog", "reviews"])
    parser.add_argument("--port", type=int, default=8080, help="where the app listens on 127.0.0.1")
    parser.add_argument("--calls", type=int, action="append", default=[],
                        help="its sidecar's outbound port for the callee (frontend: catalog; catalog: each reviews)")
    parser.add_argument("--version", default="v1", help="reviews: the version it answers with")
    parser.add_argument("--fail-every", type=int, default=0, help="reviews: every Nth request is a 503")
    args = parser.parse_args(argv)
    if args.service in ("frontend", "catalog") and not args.calls:
        parser.error(f"{args.service} needs --calls PORT")
    behaviour = {
        "frontend": lambda: frontend(lambda: args.calls[0]),
        "catalog": lambda: catalog(lambda: args.calls),
        "reviews": lambda: reviews(args.version, args.fail_every),
    }[args.service]()
    server = Service(args.service, behaviour, args.port)
    print(f"{args.service} on 127.0.0.1:{server.port}", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
