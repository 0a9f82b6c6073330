"""Read a service's Prometheus endpoint: one home for the benches' scrapes."""

from __future__ import annotations

from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def metric_samples(url: str) -> Samples:
    """Every sample the endpoint serves, by sample name: (labels, value) pairs."""
    text = httpx.get(url, timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def aws_requests_by_operation(url: str) -> Counter[str]:
    """The service's AWS requests so far by operation (``memeforge_aws_requests_total``)."""
    counted: Counter[str] = Counter()
    for labels, value in metric_samples(url).get("memeforge_aws_requests_total", []):
        counted[labels["operation"]] += int(value)
    return counted
