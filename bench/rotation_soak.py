"""``make rotation-soak``: key rotation under load, for longer than the test suite runs it.

    python -m bench.rotation_soak [--rotations 6] [--rotate-every 30] [--overlap 20]
                                    [--expiration 60] [--rate 4] [--revoke-after 75]

moto enforces IAM; each service runs as its own IAM user and gets that user's keys from
``devenv.iam.credentials_vendor`` (the container credentials protocol, ``Expiration`` up to
``--expiration`` s ahead). Every ``--rotate-every`` s the vendor creates a new key per service
and serves it; ``--overlap`` s later it deactivates the old key, checks that AWS refuses it,
and deletes it. ``--revoke-after`` s into the run it also revokes every key at once (a leaked
key: no overlap), ``--revoke-after 0`` to skip. Memes are submitted at ``--rate`` per second
until ``--rotations`` keys per service have been retired on schedule, then polled until they
settle, each image downloaded through its presigned URL.

Prints one line and one JSON object; exits non-zero unless every meme ended DONE, no request
failed, no service was restarted or died, every service fetched every key retired on
schedule and every retired key was refused once deactivated.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from devenv.drills.rotation import RotationConfig, run_rotation


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rotations", type=int, default=6)
    parser.add_argument("--rotate-every", type=float, default=30.0)
    parser.add_argument("--overlap", type=float, default=20.0)
    parser.add_argument("--expiration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=4.0, help="memes per second")
    parser.add_argument("--renderers", type=int, default=1)
    parser.add_argument("--render-processes", type=int, default=2)
    parser.add_argument("--revoke-after", type=float, default=75.0, help="0: no revocation")
    parser.add_argument("--keep", type=Path, default=None, help="keep logs in this directory")
    args = parser.parse_args()
    config = RotationConfig(
        rotations=args.rotations,
        rotate_every_s=args.rotate_every,
        overlap_s=args.overlap,
        expiration_s=args.expiration,
        rate=args.rate,
        renderers=args.renderers,
        render_processes=args.render_processes,
        revoke_after_s=args.revoke_after or None,
        deadline_s=args.rotations * args.rotate_every + args.overlap + 300,
    )
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run_rotation(config, args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="memeforge-rotation-") as workdir:
            report = asyncio.run(run_rotation(config, Path(workdir)))
    print(report.line())
    print(report.json())
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
