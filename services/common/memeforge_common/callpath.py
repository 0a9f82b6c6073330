"""Per-call work botocore does that memeforge's calls do not need, taken off each client.

- **Endpoint parameters the rules never read.** Every call fills in each parameter of
  the service's endpoint ruleset and resolves the endpoint through a cache keyed by all
  of them. S3's ruleset declares ``Key``, ``Prefix`` and ``CopySource`` but no rule,
  URL or header template reads them, so each new object key missed that cache and ran
  the whole S3 ruleset again. A parameter no rule reads cannot change the endpoint, so
  the resolver no longer fills those in: same endpoint, resolved once per bucket.
- **``Expect: 100-continue`` on S3 uploads.** botocore asks for it on every PutObject and
  UploadPart whose body it wraps as a file, so the client sends the headers, waits a
  round trip for ``100 Continue``, then sends the body. Our bodies are bytes already in
  memory (a rendered image, an archive part): the wait saves nothing and costs a round
  trip, a wake-up and a second socket write per upload.
"""

from __future__ import annotations

import json
import re
from typing import Any

from memeforge_common import botocompat

# A ruleset reads a parameter as {"ref": "Name"} or in a template string, "{Name}" or
# "{Name#attribute}" (botocore's endpoint_provider.TEMPLATE_STRING_RE).
_REFERENCE = re.compile(r'"ref":\s*"([A-Za-z0-9_]+)"')
_TEMPLATE = re.compile(r"\{([A-Za-z0-9_]+)[#}]")


def unread_params(ruleset: dict[str, Any]) -> frozenset[str]:
    """The ruleset's parameters that no rule reads (required ones are always kept)."""
    rules = json.dumps(ruleset.get("rules", []))
    read = set(_REFERENCE.findall(rules)) | set(_TEMPLATE.findall(rules))
    return frozenset(
        name
        for name, definition in ruleset.get("parameters", {}).items()
        if name not in read and not definition.get("required")
    )


def skip_unread_endpoint_params(client: Any) -> frozenset[str]:
    """Have the client's endpoint resolver leave out the parameters no rule reads; returns
    their names."""
    ruleset = botocompat.endpoint_ruleset(client)
    if ruleset is None:
        return frozenset()
    unread = unread_params(ruleset)
    if unread:
        params = botocompat.endpoint_params(client)
        botocompat.set_endpoint_params(
            client, {name: value for name, value in params.items() if name not in unread}
        )
    return unread


def trim(client: Any) -> None:
    """Take the per-call work above off ``client``."""
    skip_unread_endpoint_params(client)
    if client.meta.service_model.service_name == "s3":
        botocompat.drop_expect_continue(client)
