"""``python -m devenv.run`` (``make run``): the whole product on this machine until Ctrl-C.

The first Ctrl-C or SIGTERM stops everything gracefully; another one during that stop
makes it hurry (what is still running is killed at once), but never abandons it: no
emulator or service is left behind holding its port.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from devenv.run.emulator import BACKENDS
from devenv.run.stack import start_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None, help="default: $MEMEFORGE_BACKEND or moto"
    )
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--workdir", type=Path, default=None, help="emulator state and logs")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="memeforge-run-"))

    hurry = threading.Event()

    def hurry_up(signum: int, frame: FrameType | None) -> None:
        if not hurry.is_set():  # os.write: print() must not re-enter a print in progress
            os.write(1, "\nsignal again: killing what is still running…\n".encode())
        hurry.set()

    def terminate(signum: int, frame: FrameType | None) -> None:
        # From now on a signal speeds the stop up instead of interrupting it.
        signal.signal(signal.SIGINT, hurry_up)
        signal.signal(signal.SIGTERM, hurry_up)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, terminate)
    signal.signal(signal.SIGTERM, terminate)
    print("starting the AWS emulator and the services…", flush=True)
    try:
        stack = start_stack(
            workdir,
            backend=args.backend,
            api_port=args.port,
            settings={"MEMEFORGE_LOG_FORMAT": "text"},
            console=True,
            hurry=hurry,
        )
    except KeyboardInterrupt:  # start_stack has stopped what it had started
        print("stopped.", flush=True)
        return
    print(
        f"\nmemeforge is up: API {stack.api_url}  (docs: {stack.api_url}/docs)\n"
        f"web UI: {stack.api_url}/   CLI: MEMEFORGE_API={stack.api_url} memeforge --help\n"
        f"API key of the dev tenant (every scope):\n"
        f"  export MEMEFORGE_API_KEY={stack.api_key}\n"
        f"AWS emulator ({stack.emulator.backend}): {stack.emulator.env}\n"
        f"emulator logs in {workdir}. Press Ctrl-C to stop.\n",
        flush=True,
    )
    try:
        while True:
            for name, proc in stack.services.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; restarting it", flush=True)
                    stack.start_service(name, console=True)
                    break
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    main()
