"""Each service's IAM policy (iam/<service>-policy.json) grants exactly what its code calls.

The calls are found statically by ``devenv.iam.reachability`` (its own tests:
tests/unit/test_iam_reachability.py). A policy may grant neither more (least privilege) nor
less (the service would fail in production) than that set, and names only the configured
bucket, table and the queues the service's code reads.
"""

from __future__ import annotations

import json
import re

import pytest

from devenv.iam.reachability import (
    IAM,
    PLACEHOLDERS,
    QUEUE_SETTINGS,
    SERVICES,
    as_list,
    defaults,
    load_policy,
    policy_actions,
    policy_differences,
    policy_resources,
    reachable,
    statements,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_policy_actions_are_exactly_the_calls_in_code(service: str) -> None:
    """README "Each service's policy in iam/ grants exactly the calls its code makes"."""
    filename = SERVICES[service][0]
    found = policy_differences(service)
    assert not found.missing, (
        f"iam/{filename} lacks actions the {service} code calls: {found.missing}"
    )
    assert not found.extra, (
        f"iam/{filename} grants actions the {service} code never calls: {found.extra}"
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_policy_is_well_formed_and_scoped(service: str) -> None:
    filename, _ = SERVICES[service]
    text = (IAM / filename).read_text()
    policy = json.loads(text)
    assert policy["Version"] == "2012-10-17"
    assert set(re.findall(r"\$\{[^}]*\}", text)) <= PLACEHOLDERS
    sids = [s.get("Sid") for s in statements(policy)]
    assert all(sids), "every statement needs a Sid"
    assert len(set(sids)) == len(sids), "Sids must be unique"
    settings = defaults()
    for statement in statements(policy):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{statement['Sid']}: wildcard action {action}"
        for resource in as_list(statement["Resource"]):
            assert resource != "*", f"{statement['Sid']}: Resource '*'"
            if resource.startswith("arn:aws:s3:::"):
                bucket = resource.removeprefix("arn:aws:s3:::").split("/")[0]
                assert bucket == settings.bucket, resource
            elif resource.startswith("arn:aws:dynamodb:"):
                assert resource.split(":table/")[1].split("/")[0] == settings.table, resource
            elif resource.startswith("arn:aws:sqs:"):
                assert resource.startswith("arn:aws:sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:")
            elif resource.startswith("arn:aws:ses:"):
                identity = "arn:aws:ses:${AWS_REGION}:${AWS_ACCOUNT_ID}:identity/"
                assert resource == identity + settings.email_sender, resource
            else:
                raise AssertionError(f"{statement['Sid']}: unexpected resource {resource}")
            prefix = resource.split(":")[2]
            for action in as_list(statement["Action"]):
                assert action.startswith(prefix + ":"), f"{action} on {resource}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_policy_queues_are_the_queues_the_code_uses(service: str) -> None:
    filename, roots = SERVICES[service]
    settings = defaults()
    if service == "bootstrap":
        expected = {getattr(settings, q) for q in QUEUE_SETTINGS}  # creates all of them
    else:
        expected = {getattr(settings, q) for q in reachable(roots).queues}
    arn = "arn:aws:sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:"
    granted = {r.removeprefix(arn) for r in policy_resources(load_policy(filename), arn)}
    assert granted == expected


def test_only_the_notifier_may_send_mail() -> None:
    """Issue 15: "Only the notifier's IAM policy grants ses:SendEmail / ses:SendRawEmail"."""
    senders = {
        service
        for service, (filename, _) in SERVICES.items()
        if policy_actions(load_policy(filename)) & {"ses:SendEmail", "ses:SendRawEmail"}
    }
    assert senders == {"notifier"}


def test_trust_policy_template_is_irsa_for_one_service_account() -> None:
    """docs/credentials.md "EKS with IRSA": one IAM role per service account."""
    text = (IAM / "irsa-trust-policy.json").read_text()
    policy = json.loads(text)
    (statement,) = statements(policy)
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].startswith(
        "arn:aws:iam::${AWS_ACCOUNT_ID}:oidc-provider/"
    )
    conditions = statement["Condition"]["StringEquals"]
    assert conditions["${OIDC_PROVIDER}:aud"] == "sts.amazonaws.com"
    assert conditions["${OIDC_PROVIDER}:sub"] == (
        "system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}"
    )


def test_pod_identity_trust_is_for_one_service_account_of_one_cluster() -> None:
    """docs/credentials.md "EKS Pod Identity": the same roles, one service account.
    Without the session-tag conditions any Pod Identity association in the account
    could assume the role; sts:TagSession is needed because EKS passes those tags."""
    (statement,) = statements(json.loads((IAM / "pod-identity-trust-policy.json").read_text()))
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/eks-cluster-name": "${CLUSTER_NAME}",
            "aws:RequestTag/kubernetes-namespace": "${NAMESPACE}",
            "aws:RequestTag/kubernetes-service-account": "${SERVICE_ACCOUNT}",
        }
    }


def test_keda_scaler_policy_only_reads_queue_depth() -> None:
    policy = load_policy("keda-scaler-policy.json")
    assert policy_actions(policy) == {"sqs:GetQueueAttributes"}
    settings = defaults()
    arn = "arn:aws:sqs:${AWS_REGION}:${AWS_ACCOUNT_ID}:"
    queues = {r.removeprefix(arn) for r in policy_resources(policy, arn)}
    assert queues == {settings.request_queue, settings.render_queue}
