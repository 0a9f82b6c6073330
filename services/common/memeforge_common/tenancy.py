"""Tenants are walls (invariant 9): every item names its tenant, and lists go by tenant.

The tenant index is sparse: only items with a ``tenant_kind`` (``<tenant>#meme``,
``<tenant>#apikey``) are in it, sorted by ``created_at``, so "my memes, newest first" and
"this tenant's keys" are one Query each, never a Scan.
"""

from __future__ import annotations

TENANT_INDEX = "tenant-items"
# Owner of the seed templates: every key may read them, no key belongs to it.
PUBLIC_TENANT = "public"


def tenant_kind(tenant: str, kind: str) -> str:
    return f"{tenant}#{kind}"
