"""Which AWS actions each service's code can reach, to check iam/<service>-policy.json.

Each policy must grant exactly what its code calls (tests/unit/test_iam_policies.py);
``python -m devenv.iam.reachability`` prints the differences for every service.

The AWS calls are found statically: every module of the service's package, plus the
functions and methods of ``memeforge_common`` that the service actually reaches, are
scanned for botocore client method calls (``s3.head_object(...)``, ``waiter =
ddb.get_waiter("table_exists")``, ``generate_presigned_url("get_object", ...)``). Each call
maps to the IAM action(s) that authorise it (``head_object`` → ``s3:GetObject``,
``send_message_batch`` → ``sqs:SendMessage``...). A policy may grant neither more (least
privilege) nor less (the service would fail in production) than that set.

Resources are checked too, as far as the code says: the SQS queues a policy names must be
exactly the queues whose settings (``settings.request_queue``, ``settings.render_dlq``...)
the service's reachable code reads; S3 and DynamoDB resources must name the configured
bucket and table. Names are the ``Settings`` defaults, which the deployment manifests use.

How "reaches" is computed (a sound-enough over-approximation, no imports are executed):
the service package's code is all reachable; a ``memeforge_common`` function is reachable
when reachable code names it (imported by name, or ``module.function``); a method when
reachable code calls or references ``<receiver>.<method>`` and the receiver is ``self``/
``cls`` of its class or, for a method name that builtin types also have (``get``,
``update``...), when the receiver's name matches the class (``self._store.get`` →
``MemeStore.get``, but not ``response.get``). Only modules the service imports
(transitively) are searched.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from memeforge_common.settings import Settings

from devenv import REPO_ROOT as ROOT

IAM = ROOT / "iam"
PACKAGE_DIRS = {
    "memeforge_common": ROOT / "services/common/memeforge_common",
    "memeforge_api": ROOT / "services/api/memeforge_api",
    "memeforge_consumer": ROOT / "services/consumer/memeforge_consumer",
    "memeforge_renderer": ROOT / "services/renderer/memeforge_renderer",
    "memeforge_notifier": ROOT / "services/notifier/memeforge_notifier",
}
LIBRARY = "memeforge_common"

# service → (policy file, root modules: a package name means every module in it)
SERVICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "api": ("api-policy.json", ("memeforge_api",)),
    "consumer": ("consumer-policy.json", ("memeforge_consumer",)),
    "renderer": ("renderer-policy.json", ("memeforge_renderer",)),
    "notifier": ("notifier-policy.json", ("memeforge_notifier",)),
    "bootstrap": ("bootstrap-policy.json", ("memeforge_common.bootstrap",)),
}

IAM_PREFIX = {"s3": "s3", "sqs": "sqs", "dynamodb": "dynamodb", "ses": "ses"}
# Operations whose IAM action is not simply "<prefix>:<OperationName>".
# GetObject/HeadObject also need s3:ListBucket: without it S3 answers a missing key with
# 403 AccessDenied instead of 404, and the code relies on NotFound (a missing template is
# a FAILED meme or a 404 for the client, not an endless retry or a 500).
SPECIAL_ACTIONS: dict[str, tuple[str, ...]] = {
    "s3:GetObject": ("s3:GetObject", "s3:ListBucket"),
    "s3:HeadObject": ("s3:GetObject", "s3:ListBucket"),
    "s3:HeadBucket": ("s3:ListBucket",),
    "s3:ListObjects": ("s3:ListBucket",),
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:ListObjectVersions": ("s3:ListBucketVersions",),
    "s3:ListMultipartUploads": ("s3:ListBucketMultipartUploads",),
    "s3:ListParts": ("s3:ListMultipartUploadParts",),
    "s3:CreateMultipartUpload": ("s3:PutObject",),
    "s3:UploadPart": ("s3:PutObject",),
    "s3:CompleteMultipartUpload": ("s3:PutObject",),
    "s3:UploadPartCopy": ("s3:GetObject", "s3:PutObject"),
    "s3:CopyObject": ("s3:GetObject", "s3:PutObject"),
    "s3:DeleteObjects": ("s3:DeleteObject",),
    "s3:GetObjectAttributes": ("s3:GetObject", "s3:GetObjectAttributes"),
    "s3:PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "s3:PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration",),
    "s3:GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "s3:DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "sqs:SendMessageBatch": ("sqs:SendMessage",),
    "sqs:DeleteMessageBatch": ("sqs:DeleteMessage",),
    "sqs:ChangeMessageVisibilityBatch": ("sqs:ChangeMessageVisibility",),
    # A transaction is authorised action by action (PutItem, UpdateItem...): those come
    # from its TransactItems literal (TRANSACT_ACTIONS), not from the call itself.
    "dynamodb:TransactWriteItems": (),
}
# The keys of a TransactWriteItems action and the IAM action that authorises each. The
# scanner finds them as dict literals ({"Put": {"TableName": ...}}) in the code.
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# Operations that need several IAM actions depending on their arguments: map them here
# explicitly when the code starts using them.
UNMAPPED = {"dynamodb:TransactGetItems", "dynamodb:ExecuteStatement"}

QUEUE_SETTINGS = (
    "request_queue",
    "render_queue",
    "notification_queue",
    "request_dlq",
    "render_dlq",
    "notification_dlq",
)
GENERIC_METHODS = frozenset(
    name
    for typ in (dict, list, set, str, bytes, tuple, object, frozenset)
    for name in dir(typ)
    if not name.startswith("__")
) | frozenset({"open", "close", "run", "start", "stop", "wait", "read", "write", "send"})
Policy = dict[str, Any]  # an IAM policy document, or one of its statements
PLACEHOLDERS = {"${AWS_REGION}", "${AWS_ACCOUNT_ID}"}


# --- botocore's view of the services memeforge calls --------------------------------------
@dataclass(frozen=True)
class BotoModel:
    methods: dict[str, tuple[str, str]]  # client method → (service, OperationName)
    waiters: dict[tuple[str, str], str]  # (service, waiter method name) → OperationName
    paginators: dict[tuple[str, str], str]


@cache
def boto_model() -> BotoModel:
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    methods: dict[str, tuple[str, str]] = {}
    waiters: dict[tuple[str, str], str] = {}
    paginators: dict[tuple[str, str], str] = {}
    for service in IAM_PREFIX:
        model = session.get_service_model(service)
        for op in model.operation_names:
            name = xform_name(op)
            assert name not in methods, f"{name} is an operation of two services"
            methods[name] = (service, op)
        try:
            waiter_model = session.get_waiter_model(service)
        except Exception:  # the service has no waiters
            waiter_model = None
        if waiter_model is not None:
            for waiter in waiter_model.waiter_names:
                waiters[(service, xform_name(waiter))] = waiter_model.get_waiter(waiter).operation
        loader = session.get_component("data_loader")
        try:
            pagination = loader.load_service_model(service, "paginators-1")["pagination"]
        except Exception:  # the service has no paginators
            pagination = {}
        for op in pagination:
            paginators[(service, xform_name(op))] = op
    return BotoModel(methods, waiters, paginators)


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    key = f"{IAM_PREFIX[service]}:{operation}"
    if key in UNMAPPED:
        raise AssertionError(f"{key}: map its IAM actions in SPECIAL_ACTIONS first")
    return SPECIAL_ACTIONS.get(key, (key,))


# --- the code: modules, units (functions, methods, module bodies) --------------------------
@dataclass
class Unit:
    module: str
    qualname: str  # "func", "Class.method" or "<module>"
    cls: str | None
    node: ast.AST
    boto_calls: set[tuple[str, str, int]] = field(default_factory=set)  # (service, op, line)
    names: set[str] = field(default_factory=set)  # bare names loaded
    attributes: list[tuple[str | None, str]] = field(default_factory=list)  # (receiver, attr)
    settings_read: set[str] = field(default_factory=set)


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str]  # memeforge modules imported (anywhere in the file)
    imported_names: dict[str, str]  # local name → "module.name" or "module"
    units: list[Unit]


def module_names() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, directory in PACKAGE_DIRS.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _receiver_name(node.func)
    return None


def _receiver_hint(node: ast.expr) -> str | None:
    text = ast.unparse(node).lower()
    for service, hints in (
        ("s3", ("s3",)),
        ("sqs", ("sqs",)),
        ("dynamodb", ("ddb", "dynamo")),
        ("ses", ("ses",)),
    ):
        if any(h in text for h in hints):
            return service
    return None


def _const_str(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def scan_unit(unit: Unit) -> None:
    model = boto_model()
    for node in ast.walk(unit.node):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            unit.names.add(node.id)
        elif isinstance(node, ast.Attribute):
            unit.attributes.append((_receiver_name(node.value), node.attr))
            if node.attr in QUEUE_SETTINGS:
                unit.settings_read.add(node.attr)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                action = TRANSACT_ACTIONS.get(_const_str(key) or "")
                if (
                    action
                    and isinstance(value, ast.Dict)
                    and "TableName" in {_const_str(k) for k in value.keys}
                ):
                    unit.boto_calls.add(("dynamodb", action, node.lineno))
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        first_arg = _const_str(node.args[0]) if node.args else None
        if method in model.methods:
            service, op = model.methods[method]
            unit.boto_calls.add((service, op, node.lineno))
        elif method in ("get_waiter", "get_paginator") and first_arg:
            table = model.waiters if method == "get_waiter" else model.paginators
            candidates = [(s, op) for (s, name), op in table.items() if name == first_arg]
            hint = _receiver_hint(node.func.value)
            if len(candidates) > 1 and hint:
                candidates = [(s, op) for s, op in candidates if s == hint]
            assert len(candidates) == 1, (
                f"{unit.module}:{node.lineno}: cannot tell which client's {method}"
                f"({first_arg!r}) this is: {candidates}"
            )
            unit.boto_calls.add((candidates[0][0], candidates[0][1], node.lineno))
        elif method == "generate_presigned_post":
            # A browser form the client sends to S3 under the signer's identity: PutObject.
            unit.boto_calls.add(("s3", "PutObject", node.lineno))
        elif method == "generate_presigned_url":
            client_method = first_arg or _const_str(
                next((k.value for k in node.keywords if k.arg == "ClientMethod"), None)
            )
            assert client_method in model.methods, (
                f"{unit.module}:{node.lineno}: generate_presigned_url needs a literal client method"
            )
            service, op = model.methods[client_method]
            unit.boto_calls.add((service, op, node.lineno))


def _module_body(tree: ast.Module) -> ast.Module:
    """The module minus its function and class bodies (those are units of their own)."""
    body: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            body.extend(ast.Expr(d) for d in stmt.decorator_list)
        elif isinstance(stmt, ast.ClassDef):
            body.extend(ast.Expr(b) for b in stmt.bases)
            for inner in stmt.body:
                if not isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                    body.append(inner)
        else:
            body.append(stmt)
    return ast.Module(body=body, type_ignores=[])


def _resolve_from(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


@cache
def load_module(name: str) -> Module:
    path = module_names()[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    imports: set[str] = set()
    imported_names: dict[str, str] = {}
    known = module_names()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGE_DIRS:
                    imports.add(alias.name)
                    imported_names[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(name, is_package, node.level, node.module)
            if source.split(".")[0] not in PACKAGE_DIRS:
                continue
            imports.add(source)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    imports.add(submodule)
                    imported_names[alias.asname or alias.name] = submodule
                else:
                    imported_names[alias.asname or alias.name] = f"{source}:{alias.name}"

    units = [Unit(name, "<module>", None, _module_body(tree))]
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            units.append(Unit(name, stmt.name, None, stmt))
        elif isinstance(stmt, ast.ClassDef):
            for inner in stmt.body:
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                    units.append(Unit(name, f"{stmt.name}.{inner.name}", stmt.name, inner))
    for unit in units:
        scan_unit(unit)
    return Module(name, path, {i for i in imports if i in known}, imported_names, units)


def import_closure(roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(load_module(name).imports - seen)
    return seen


def service_roots(root_names: tuple[str, ...]) -> list[str]:
    names = module_names()
    return [m for m in names for r in root_names if m == r or m.startswith(r + ".")]


@dataclass(frozen=True)
class Reach:
    units: list[Unit]
    calls: dict[str, set[str]]  # IAM action → where ("module:line")
    queues: set[str]  # queue setting attributes read


def reachable(root_names: tuple[str, ...]) -> Reach:
    roots = service_roots(root_names)
    modules = import_closure(roots)
    library_units = [
        u
        for m in sorted(modules)
        if m.split(".")[0] == LIBRARY and m not in roots
        for u in load_module(m).units
        if u.qualname != "<module>"
    ]
    functions = {(u.module, u.qualname): u for u in library_units if u.cls is None}
    methods: dict[str, list[Unit]] = {}
    classes: dict[str, list[Unit]] = {}
    for u in library_units:
        if u.cls is not None:
            methods.setdefault(u.qualname.split(".", 1)[1], []).append(u)
            classes.setdefault(u.cls, []).append(u)
    class_module = {u.cls: u.module for u in library_units if u.cls}

    def resolve(unit: Unit) -> Iterator[Unit]:
        module = load_module(unit.module)
        for name in unit.names:
            target = module.imported_names.get(name)
            if target and ":" in target:
                source, symbol = target.split(":")
            else:
                source, symbol = unit.module, name
            if (source, symbol) in functions:
                yield functions[(source, symbol)]
            if symbol in classes and class_module[symbol] == source:
                yield from (u for u in classes[symbol] if u.qualname.split(".")[1].startswith("__"))
        for receiver, attr in unit.attributes:
            target = module.imported_names.get(receiver or "")
            if target and ":" not in target and (target, attr) in functions:
                yield functions[(target, attr)]  # module.function
            for candidate in methods.get(attr, []):
                cls = candidate.cls or ""
                if receiver in ("self", "cls"):
                    if unit.cls == cls:
                        yield candidate
                elif attr not in GENERIC_METHODS or _matches_class(receiver, cls):
                    yield candidate

    todo = [u for m in roots for u in load_module(m).units]
    seen: dict[tuple[str, str], Unit] = {}
    while todo:
        unit = todo.pop()
        key = (unit.module, unit.qualname)
        if key in seen:
            continue
        seen[key] = unit
        todo.extend(u for u in resolve(unit) if (u.module, u.qualname) not in seen)

    calls: dict[str, set[str]] = {}
    queues: set[str] = set()
    for unit in seen.values():
        queues |= unit.settings_read
        for service, op, line in unit.boto_calls:
            for action in iam_actions(service, op):
                calls.setdefault(action, set()).add(f"{unit.module}:{line}")
    return Reach(list(seen.values()), calls, queues)


def _matches_class(receiver: str | None, cls: str) -> bool:
    word = (receiver or "").strip("_").lower()
    return bool(word) and (word in cls.lower() or cls.lower() in word)


# --- the policies ---------------------------------------------------------------------------
def load_policy(filename: str) -> Policy:
    policy: Policy = json.loads((IAM / filename).read_text())
    return policy


def statements(policy: Policy) -> list[Policy]:
    found = policy["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def policy_actions(policy: Policy) -> set[str]:
    return {a for s in statements(policy) for a in as_list(s["Action"])}


def policy_resources(policy: Policy, prefix: str) -> set[str]:
    return {r for s in statements(policy) for r in as_list(s["Resource"]) if r.startswith(prefix)}


def defaults() -> Settings:
    # Defaults only: the environment the tests run in must not leak into the expectations.
    return Settings.model_construct()


@dataclass(frozen=True)
class Differences:
    """What one service's policy lacks (action → where the code calls it) and grants extra."""

    missing: dict[str, list[str]]
    extra: list[str]


def policy_differences(service: str) -> Differences:
    filename, roots = SERVICES[service]
    reach = reachable(roots)
    granted = policy_actions(load_policy(filename))
    needed = set(reach.calls)
    return Differences(
        missing={a: sorted(reach.calls[a]) for a in sorted(needed - granted)},
        extra=sorted(granted - needed),
    )


def main() -> int:
    """Print each service's policy differences; exit 1 if any policy differs from its code."""
    failed = False
    for service in sorted(SERVICES):
        found = policy_differences(service)
        filename = SERVICES[service][0]
        if not found.missing and not found.extra:
            print(f"iam/{filename}: matches the {service} code")
            continue
        failed = True
        for action, where in found.missing.items():
            print(f"iam/{filename}: lacks {action}, called at {', '.join(where)}")
        for action in found.extra:
            print(f"iam/{filename}: grants {action}, which the {service} code never calls")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
