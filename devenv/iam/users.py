"""Dev only: one IAM user per service in the emulator, carrying exactly the repo's policy.

This is *not* the production bootstrap. ``memeforge_common.bootstrap`` creates resources and
never identities; in AWS the roles come from your IaC (docs/deploy.md, "IAM and IRSA"). Here,
against ``devenv.iam.moto_iam`` only:

1. the bootstrap has run unauthenticated (moto enforces nothing yet);
2. :func:`create_service_users` creates ``memeforge-dev-<service>`` for api, consumer and
   renderer, each with ``iam/<service>-policy.json`` as its only (inline) policy, ``envsubst``'d
   for the emulator's account and region and otherwise verbatim;
3. :func:`enforce_iam` switches moto's authentication on (``/moto-api/reset-auth`` with 0:
   moto's ``INITIAL_NO_AUTH_ACTION_COUNT``, reset at run time, so that counting the
   bootstrap's requests is not needed), after which the emulator's dummy keys are refused;
4. each service starts with its own identity: static keys (:func:`static_keys`), or
   short-lived keys from the credentials vendor (:class:`VendedCredentials`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from devenv import REPO_ROOT
from devenv.run.emulator import Emulator
from devenv.run.proc import free_port, http_ok, spawn, wait_until
from devenv.run.stack import Stack

IAM_DIR = REPO_ROOT / "iam"
SERVICES = ("api", "consumer", "renderer", "notifier")
USER_PREFIX = "memeforge-dev-"
ROTATOR_USER = f"{USER_PREFIX}key-rotator"
PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
# Variables of the default credential chain that must not reach a service that is meant
# to use another link of the chain (and a developer's ~/.aws must never be read).
CHAIN_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def user_name(service: str) -> str:
    return f"{USER_PREFIX}{service}"


def rotator_policy(account_id: str, partition: str = "aws") -> str:
    """The vendor's own identity may only manage the service users' access keys."""
    users = [f"arn:{partition}:iam::{account_id}:user/{user_name(s)}" for s in SERVICES]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "RotateServiceKeys",
                    "Effect": "Allow",
                    "Action": [
                        "iam:CreateAccessKey",
                        "iam:UpdateAccessKey",
                        "iam:DeleteAccessKey",
                        "iam:ListAccessKeys",
                    ],
                    "Resource": users,
                }
            ],
        }
    )


def render_policy(service: str, *, region: str, account_id: str) -> str:
    """``envsubst < iam/<service>-policy.json``, for the two placeholders the policies use."""
    text = (IAM_DIR / f"{service}-policy.json").read_text()
    text = text.replace("${AWS_REGION}", region).replace("${AWS_ACCOUNT_ID}", account_id)
    leftover = PLACEHOLDER.findall(text)
    if leftover:
        raise ValueError(f"iam/{service}-policy.json: unexpected placeholders {leftover}")
    json.loads(text)
    return text


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def client(emulator: Emulator, service: str, key: AccessKey | None = None) -> Any:
    """A plain botocore client for the emulator: its dummy keys (before enforcement) or ``key``."""
    env = emulator.child_env(key.env() if key else None)
    endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env["AWS_ENDPOINT_URL"]
    session = botocore.session.Session()
    return session.create_client(
        service,
        region_name=env["AWS_REGION"],
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            retries={"mode": "standard", "max_attempts": 1},
            # As the services sign (memeforge_common.aws): SigV4, path-style on loopback.
            signature_version="s3v4" if service == "s3" else None,
            s3={"addressing_style": "path"} if service == "s3" else None,
        ),
    )


def account_id(emulator: Emulator) -> str:
    return str(client(emulator, "sts").get_caller_identity()["Account"])


def create_user(emulator: Emulator, policy: str, *, key: bool) -> AccessKey | None:
    """User ``memeforge-dev-<policy>`` with ``iam/<policy>-policy.json`` (+ a key if ``key``)."""
    iam = client(emulator, "iam")
    region = emulator.child_env()["AWS_REGION"]
    name = user_name(policy)
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName=f"memeforge-{policy}",
        PolicyDocument=render_policy(policy, region=region, account_id=account_id(emulator)),
    )
    return _new_key(iam, name) if key else None


def create_service_users(emulator: Emulator, *, keys: bool) -> dict[str, AccessKey | None]:
    """One user per service with its repository policy; plus one access key each if ``keys``."""
    return {service: create_user(emulator, service, key=keys) for service in SERVICES}


def create_rotator(emulator: Emulator) -> AccessKey:
    """The credentials vendor's own identity (may only manage the service users' keys)."""
    iam = client(emulator, "iam")
    iam.create_user(UserName=ROTATOR_USER)
    iam.put_user_policy(
        UserName=ROTATOR_USER,
        PolicyName="memeforge-dev-key-rotator",
        PolicyDocument=rotator_policy(account_id(emulator)),
    )
    return _new_key(iam, ROTATOR_USER)


def _new_key(iam: Any, user: str) -> AccessKey:
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return AccessKey(key["AccessKeyId"], key["SecretAccessKey"])


def enforce_iam(emulator: Emulator) -> None:
    """From now on moto authenticates and authorises every request (devenv.iam.moto_iam only)."""
    if emulator.backend != "moto":
        raise ValueError("IAM enforcement needs the moto backend (devenv.iam.moto_iam)")
    request = urllib.request.Request(
        f"{emulator.env['AWS_ENDPOINT_URL']}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},  # moto reads the raw body, not a form
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        json.load(response)


def isolated(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """``env`` without any credential-chain variable, and with no shared config files."""
    clean = {k: v for k, v in env.items() if k not in CHAIN_VARIABLES}
    clean["AWS_SHARED_CREDENTIALS_FILE"] = str(workdir / "no-aws-credentials")
    clean["AWS_CONFIG_FILE"] = str(workdir / "no-aws-config")
    clean["AWS_EC2_METADATA_DISABLED"] = "true"
    return clean


# --- start_stack(prepare=...) hooks ----------------------------------------------------------
def static_keys(stack: Stack) -> None:
    """Each service runs as its own IAM user, with that user's keys in its environment.
    ``service_env["bootstrap"]`` is the bootstrap's identity (iam/bootstrap-policy.json),
    for re-running the bootstrap under its policy."""
    keys = create_service_users(stack.emulator, keys=True)
    keys["bootstrap"] = create_user(stack.emulator, "bootstrap", key=True)
    enforce_iam(stack.emulator)
    for name, key in keys.items():
        assert key is not None
        stack.service_env[name] = {**isolated(stack.env, stack.workdir), **key.env()}


@dataclass(frozen=True)
class Rotation:
    """Key rotation by the vendor: a new key every ``rotate_every_s``; the previous one is
    deactivated, verified refused and deleted ``overlap_s`` later. Served credentials expire
    ``expiration_s`` ahead, but never after their key's retirement. ``overlap_s`` must be
    shorter than ``rotate_every_s``: IAM allows two access keys per user."""

    rotate_every_s: float = 30.0
    overlap_s: float = 20.0
    expiration_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.overlap_s < self.rotate_every_s:
            raise ValueError("need 0 < overlap_s < rotate_every_s (two keys per IAM user)")
        if self.expiration_s <= 0:
            raise ValueError("expiration_s must be positive")


@dataclass
class VendedCredentials:
    """Each service gets short-lived, rotating keys from ``devenv.iam.credentials_vendor``
    through the container credentials provider (as on ECS or EKS Pod Identity)."""

    rotation: Rotation
    vendor_url: str = ""
    log_path: Path | None = None

    def __call__(self, stack: Stack) -> None:
        workdir = stack.workdir
        create_service_users(stack.emulator, keys=False)
        rotator = create_rotator(stack.emulator)
        enforce_iam(stack.emulator)
        tokens = workdir / "credential-tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)
        identities: dict[str, dict[str, str]] = {}
        for service in SERVICES:
            token_file = tokens / service
            token_file.write_text(secrets.token_urlsafe(32))
            token_file.chmod(0o600)
            identities[service] = {"user": user_name(service), "token_file": str(token_file)}
        config = workdir / "credentials-vendor.json"
        config.write_text(
            json.dumps(
                {
                    "identities": identities,
                    "rotate_every_s": self.rotation.rotate_every_s,
                    "overlap_s": self.rotation.overlap_s,
                    "expiration_s": self.rotation.expiration_s,
                }
            )
        )
        port = free_port()
        self.log_path = workdir / "credentials-vendor.log"
        vendor_env = {**isolated(stack.env, workdir), **rotator.env(), "PYTHONUNBUFFERED": "1"}
        vendor_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), vendor_env.get("PYTHONPATH")])
        )
        command = [sys.executable, "-m", "devenv.iam.credentials_vendor", "--config", str(config)]
        proc = spawn(
            [*command, "--port", str(port)],
            env=vendor_env,
            log_path=str(self.log_path),
        )
        stack.helpers.append(proc)
        self.vendor_url = f"http://127.0.0.1:{port}"
        wait_until(
            http_ok(f"{self.vendor_url}/healthz"), timeout=30, what="credentials vendor", proc=proc
        )
        for service in SERVICES:
            stack.service_env[service] = {
                **isolated(stack.env, workdir),
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{self.vendor_url}/v1/credentials",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": identities[service]["token_file"],
            }
