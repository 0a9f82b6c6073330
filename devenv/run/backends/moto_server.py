"""moto's server, with DynamoDB requests serialized.

moto serves each request on its own thread and does not lock its DynamoDB backend,
so two concurrent conditional writes can both pass their condition — which real
DynamoDB (and DynamoDB Local) never allows. Our exactly-once guarantees rest on that
atomicity, so this launcher runs the DynamoDB API one request at a time while S3 and
SQS (long polls included) stay concurrent.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class SerializeDynamoDB:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self._lock:
                # Materialize the body inside the lock: the write happens while iterating.
                return list(self._app(environ, start_response))
        result: Iterable[bytes] = self._app(environ, start_response)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto's own launcher does
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerializeDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
