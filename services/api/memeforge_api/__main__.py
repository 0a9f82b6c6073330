"""``python -m memeforge_api``: serve the API with uvicorn (host/port from settings)."""

from __future__ import annotations

import uvicorn
from memeforge_common.logs import configure_logging
from memeforge_common.metrics import serve_metrics
from memeforge_common.settings import get_settings

from memeforge_api.app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging("api", settings.log_level, settings.log_format)
    # Metrics on their own port (MEMEFORGE_METRICS_PORT), never on the public one.
    serve_metrics(settings.metrics_host, settings.metrics_port)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep our JSON logging
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
