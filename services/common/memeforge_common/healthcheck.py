"""``python -m memeforge_common.healthcheck``: exit 0 while the worker's loop is turning.

Used by Docker HEALTHCHECK and the Kubernetes liveness probe of the queue workers. A
long poll takes at most ``receive_wait_s`` and a full worker waits for capacity, so the
default max age leaves room for both before declaring the loop stuck.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from memeforge_common.settings import get_settings


def heartbeat_age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def main() -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-age", type=float, default=settings.receive_wait_s * 3 + 30)
    parser.add_argument("--file", default=settings.heartbeat_file)
    args = parser.parse_args()
    if not args.file:
        print("no heartbeat file configured (MEMEFORGE_HEARTBEAT_FILE)", file=sys.stderr)
        return 2
    age = heartbeat_age(Path(args.file))
    if age is None:
        print(f"no heartbeat yet at {args.file}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"heartbeat is {age:.0f}s old (max {args.max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
