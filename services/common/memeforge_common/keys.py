"""``python -m memeforge_common.keys create|list|revoke``: manage API keys.

An admin act with AWS credentials (DynamoDB access to the table), not an API call: no
key can mint or revoke keys. ``create`` prints the token alone on stdout, once; only its
hash is stored. (The bootstrap imports a first key made elsewhere, from a k8s Secret:
``MEMEFORGE_FIRST_API_KEY``.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from memeforge_common.apikeys import ALL_SCOPES, InvalidTenant, KeyStore, Scope
from memeforge_common.aws import AwsClients
from memeforge_common.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m memeforge_common.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--scope",
        action="append",
        choices=sorted(ALL_SCOPES),
        help="repeatable; default: every scope",
    )
    listing = commands.add_parser("list", help="a tenant's keys as JSON lines (no secrets)")
    listing.add_argument("--tenant", required=True)
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


async def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with AwsClients.open(settings) as aws:
        store = KeyStore(aws.dynamodb, settings.table)
        if args.command == "create":
            scopes = frozenset(Scope(s) for s in args.scope) if args.scope else ALL_SCOPES
            try:
                new = await store.create(args.tenant, args.name, scopes)
            except InvalidTenant as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            print(f"key {new.key_id} for tenant {args.tenant}: {sorted(scopes)}", file=sys.stderr)
            print(new.token)
            return 0
        if args.command == "list":
            for key in await store.list(args.tenant):
                print(json.dumps(key.public_view()))
            return 0
        if not await store.revoke(args.key_id):
            print(f"error: no key {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}", file=sys.stderr)
        return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
