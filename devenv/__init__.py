"""Developer environment: an AWS emulator on loopback and the services as processes.

Nothing here is imported by the services; they only ever see AWS_* variables.

- ``devenv.run``: the dev run (``make run``): emulator backends, the stack, processes.
- ``devenv.iam``: IAM emulation (moto enforcing IAM, per-service users, credential
  vending) and the static check that each IAM policy matches the code.
- ``devenv.drills``: the failure drills (chaos, key rotation) and their TCP proxy.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
