"""Create every AWS resource memeforge needs, idempotently, and upload the seed templates.

One command for every environment: ``python -m memeforge_common.bootstrap`` is what
``make run``, the tests, docker compose and the Kubernetes Job all run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from memeforge_common.animation import animation_facts
from memeforge_common.apikeys import ALL_SCOPES, KeyStore, NewKey
from memeforge_common.aws import AwsClients, emulated
from memeforge_common.indexes import BATCH_INDEX, LIVE_INDEX
from memeforge_common.items import CHANGES_INDEX, NOTIFY_INDEX, STATUS_ATTRIBUTES
from memeforge_common.limits import INCOMING_RETENTION_DAYS
from memeforge_common.logs import configure_logging
from memeforge_common.models import INCOMING_PREFIX, OUTPUT_PREFIX, TextBox
from memeforge_common.settings import Settings, get_settings
from memeforge_common.templates import TemplateStore
from memeforge_common.tenancy import PUBLIC_TENANT, TENANT_INDEX

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_ses import SESClient
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger("memeforge.bootstrap")

DLQ_RETENTION_S = 14 * 24 * 3600  # the SQS maximum: time to inspect what died


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


async def ensure_bucket(s3: S3Client, settings: Settings) -> None:
    try:
        if settings.aws_region == "us-east-1":
            await s3.create_bucket(Bucket=settings.bucket)
        else:
            await s3.create_bucket(
                Bucket=settings.bucket,
                CreateBucketConfiguration={"LocationConstraint": settings.aws_region},  # type: ignore[typeddict-item]
            )
        log.info("created bucket %s", settings.bucket)
    except ClientError as err:
        if _error_code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    # The bucket stays private: images leave it only through presigned URLs.
    await s3.put_public_access_block(
        Bucket=settings.bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


async def ensure_retention(s3: S3Client, settings: Settings) -> None:
    """Outputs expire after the retention period, like their items (DynamoDB TTL); direct
    uploads never completed after a day."""
    await s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "meme-outputs-retention",
                    "Filter": {"Prefix": OUTPUT_PREFIX},
                    "Status": "Enabled",
                    "Expiration": {"Days": settings.retention_days},
                },
                {
                    "ID": "abandoned-direct-uploads",
                    "Filter": {"Prefix": INCOMING_PREFIX},
                    "Status": "Enabled",
                    "Expiration": {"Days": INCOMING_RETENTION_DAYS},
                },
            ]
        },
    )


def _index(
    name: str, hash_key: str, range_key: str, *projected: str, whole_items: bool = False
) -> Any:
    """A GSI definition: keys only, the keys plus ``projected`` attributes, or whole items."""
    projection: dict[str, Any] = {"ProjectionType": "KEYS_ONLY"}
    if projected:
        projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(projected)}
    if whole_items:
        projection = {"ProjectionType": "ALL"}
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": projection,
    }


_INDEXES = (
    _index(LIVE_INDEX, "live_state", "updated_at"),
    # A tenant's memes (newest first) and keys: lists read whole items from it in one Query.
    _index(TENANT_INDEX, "tenant_kind", "created_at", whole_items=True),
    # The change feed the api's watcher queries (items.CHANGES_INDEX): the client view of
    # each item, keyed by the minute of its last change.
    _index(
        CHANGES_INDEX,
        "feed",
        "updated_at",
        *(a for a in STATUS_ATTRIBUTES if a not in ("id", "updated_at")),
    ),
    # Ended memes whose notifications are not confirmed enqueued yet (the sweeper's).
    _index(NOTIFY_INDEX, "notify_due", "updated_at"),
    # A batch's memes in item order, with what a page shows of each (their status, no spec).
    _index(BATCH_INDEX, "batch_id", "batch_seq", *(a for a in STATUS_ATTRIBUTES if a != "id")),
)
_STRING_KEYS = (
    "id",
    "live_state",
    "updated_at",
    "tenant_kind",
    "created_at",
    "feed",
    "notify_due",
    "batch_id",
)
_ATTRIBUTES: list[Any] = [
    *({"AttributeName": name, "AttributeType": "S"} for name in _STRING_KEYS),
    {"AttributeName": "batch_seq", "AttributeType": "N"},
]


async def ensure_table(ddb: DynamoDBClient, settings: Settings) -> None:
    try:
        await ddb.create_table(
            TableName=settings.table,
            AttributeDefinitions=_ATTRIBUTES,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=list(_INDEXES),
            BillingMode="PAY_PER_REQUEST",
        )
        log.info("created table %s", settings.table)
    except ClientError as err:
        if _error_code(err) != "ResourceInUseException":
            raise
    waiter = ddb.get_waiter("table_exists")
    await waiter.wait(TableName=settings.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    table = (await ddb.describe_table(TableName=settings.table))["Table"]
    present = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
    for index in _INDEXES:
        if index["IndexName"] not in present:
            # A table from before this index existed: add it in place.
            await ddb.update_table(
                TableName=settings.table,
                AttributeDefinitions=_ATTRIBUTES,
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )
            log.info("added index %s to %s", index["IndexName"], settings.table)
    ttl = await ddb.describe_time_to_live(TableName=settings.table)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        # Idempotency records expire by themselves.
        await ddb.update_time_to_live(
            TableName=settings.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )


async def ensure_queue(sqs: SQSClient, name: str, attributes: dict[str, str]) -> str:
    """Create the queue, or bring an existing one's attributes up to date."""
    try:
        url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]  # type: ignore[arg-type]
    except ClientError as err:
        if _error_code(err) not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)  # type: ignore[arg-type]
    return url


async def ensure_queue_with_dlq(
    sqs: SQSClient, name: str, settings: Settings, *, max_receive_count: int | None = None
) -> None:
    dlq_url = await ensure_queue(
        sqs, f"{name}-dlq", {"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
    )
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    receives = max_receive_count or settings.max_receive_count
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(receives)}
    await ensure_queue(
        sqs,
        name,
        {
            "VisibilityTimeout": str(settings.visibility_timeout_s),
            "RedrivePolicy": json.dumps(redrive),
        },
    )
    log.info("queue %s ready (dlq %s-dlq)", name, name)


async def verify_sender(ses: SESClient, settings: Settings) -> None:
    """On an emulator, verify the mail sender so SES accepts it. On AWS the operator
    verifies the sending domain (DKIM) once; the bootstrap sends nobody a mail."""
    if not emulated("SES"):
        return
    await ses.verify_email_identity(EmailAddress=settings.email_sender)
    log.info("verified mail sender %s", settings.email_sender)


async def seed_templates(s3: S3Client, settings: Settings) -> int:
    """Upload the bundled seed templates that are not there yet. Returns how many."""
    from PIL import Image  # only bootstrap's seeding needs Pillow

    seeds_dir = resources.files("memeforge_common") / "seeds"
    catalogue = json.loads((seeds_dir / "seeds.json").read_text())
    templates = TemplateStore(s3, settings.bucket)
    uploaded = 0
    for seed in catalogue:
        if await templates.head(seed["id"], PUBLIC_TENANT) is not None:
            continue
        data = (seeds_dir / seed["file"]).read_bytes()
        with Image.open(seeds_dir / seed["file"]) as image:
            width, height = image.size
        await templates.upload(
            seed["id"],
            tenant=PUBLIC_TENANT,
            name=seed["name"],
            data=data,
            content_type=seed["content_type"],
            width=width,
            height=height,
            layout=tuple(TextBox(text="", **box) for box in seed.get("layout", ())) or None,
            animation=animation_facts(data, max_frames=settings.max_frames),
        )
        uploaded += 1
    return uploaded


async def import_first_key(ddb: DynamoDBClient, settings: Settings) -> None:
    """Store MEMEFORGE_FIRST_API_KEY (idempotent: the same token again is fine)."""
    if settings.first_api_key is None:
        return
    key = NewKey.parse(settings.first_api_key.get_secret_value())
    if key is None:
        raise SystemExit("MEMEFORGE_FIRST_API_KEY is not of the form mf_<16 hex>_<64 hex>")
    await KeyStore(ddb, settings.table).create(
        settings.first_api_key_tenant, "first key (bootstrap)", ALL_SCOPES, key=key
    )
    log.info("first API key %s ready for tenant %s", key.key_id, settings.first_api_key_tenant)


async def bootstrap(settings: Settings, *, seed: bool = True) -> None:
    async with AwsClients.open(settings, ses=True) as aws:
        await asyncio.gather(
            ensure_bucket(aws.s3, settings),
            ensure_table(aws.dynamodb, settings),
            ensure_queue_with_dlq(aws.sqs, settings.request_queue, settings),
            ensure_queue_with_dlq(aws.sqs, settings.render_queue, settings),
            ensure_queue_with_dlq(
                aws.sqs,
                settings.notification_queue,
                settings,
                max_receive_count=settings.notify_max_attempts,
            ),
            verify_sender(aws.ses, settings),
        )
        await ensure_retention(aws.s3, settings)
        await import_first_key(aws.dynamodb, settings)
        if seed:
            count = await seed_templates(aws.s3, settings)
            log.info("seeded %d templates", count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-seed", action="store_true", help="skip the seed templates")
    args = parser.parse_args()
    settings = get_settings()
    configure_logging("bootstrap", settings.log_level, settings.log_format)
    asyncio.run(bootstrap(settings, seed=not args.no_seed))
    log.info("bootstrap complete")


if __name__ == "__main__":
    main()
