"""``python -m memeforge_renderer``: check the CPU, then render jobs until SIGTERM.

The check comes before anything imports PIL: on a CPU without AVX2, an AVX2 build of
pillow-simd would die with SIGILL instead of saying why.
"""

from __future__ import annotations

import sys

from memeforge_common.settings import get_settings

from memeforge_renderer.cpu import WRONG_CPU_EXIT_STATUS, check_cpu, required_flags


def main() -> None:
    problem = check_cpu(required_flags(get_settings().renderer_cpu_flags))
    if problem is not None:
        print(f"memeforge-renderer: refusing to start: {problem}", file=sys.stderr)
        sys.exit(WRONG_CPU_EXIT_STATUS)
    from memeforge_renderer.service import main as serve

    serve()


if __name__ == "__main__":
    main()
