"""The /metrics exposition: names, labels, counts and buckets as a scraper parses them, the
snapshot gauges, and the Grafana dashboard's queries against what the exporter really exposes."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from llmpulse.alerts.status import Status
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.telemetry.prometheus import (
    OTHER,
    SPEND_SERIES,
    MetricsExporter,
    Snapshot,
    SpendSeries,
    TargetSnapshot,
)
from llmpulse.telemetry.semconv import MAX_RESPONSE_MODELS

DASHBOARD = Path(__file__).parent.parent / "contrib" / "grafana" / "llmpulse-dashboard.json"
TARGET = "openai/gpt-4o-mini"
SERVED = "gpt-4o-mini-2024-07-18"
SECRET = "sk-proj-DO-NOT-LEAK"
BASE_URL = "https://llm-proxy.internal.example"


def check(
    kind: CheckKind,
    ok: bool = True,
    *,
    target: str = TARGET,
    provider: str = "openai",
    model: str = "gpt-4o-mini",
    **fields: Any,
) -> CheckResult:
    return CheckResult(target, provider, model, kind, datetime.now(UTC), ok, **fields)


def ok_stream() -> CheckResult:
    return check(
        CheckKind.STREAM,
        latency_ms=1500,
        ttft_ms=300,
        tokens_per_s=85,
        usage=Usage(input_tokens=12, output_tokens=40),
        cost_usd=0.00003,
        response_model=SERVED,
        ratelimit=RateLimit(requests_limit=500, requests_remaining=100, utilization=0.8),
        context_window=128000,
    )


def ok_inference() -> CheckResult:
    return check(
        CheckKind.INFERENCE,
        latency_ms=700,
        usage=Usage(input_tokens=12, output_tokens=5),
        cost_usd=0.00001,
        response_model=SERVED,
    )


def unavailable() -> CheckResult:
    return check(
        CheckKind.INFERENCE,
        ok=False,
        error_class=ErrorClass.UNAVAILABLE,
        http_status=503,
        latency_ms=150,
        error_message=f"503 from {BASE_URL}/v1/chat/completions (key {SECRET})",
        request_id=SECRET,
    )


def rate_limited() -> CheckResult:
    return check(
        CheckKind.STREAM,
        ok=False,
        error_class=ErrorClass.RATE_LIMITED,
        http_status=429,
        latency_ms=90,
        retry_after_s=2,
    )


def models() -> CheckResult:
    return check(CheckKind.MODELS, latency_ms=120, model_listed=True)


def all_results() -> list[CheckResult]:
    return [ok_stream(), ok_inference(), unavailable(), rate_limited(), models()]


def snapshot() -> Snapshot:
    return Snapshot(
        targets=(
            TargetSnapshot(TARGET, "openai", "gpt-4o-mini", Status.DOWN, 0.75, 0.8),
            TargetSnapshot("gemini/flash", "gemini", "gemini-2.0-flash", Status.UNKNOWN),
        ),
        official={"openai": "major"},
        availability_window="1h",
    )


def scrape(exporter: MetricsExporter) -> list[Sample]:
    body, content_type = exporter.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def series(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    (found,) = series(samples, name, **labels)
    return found.value


@pytest.fixture
def samples() -> list[Sample]:
    exporter = MetricsExporter(snapshot)
    for result in all_results():
        exporter.observe(result)
    return scrape(exporter)


def test_checks_are_counted_by_target_check_and_error_type(samples: list[Sample]) -> None:
    counted = {
        (s.labels["llmpulse_check"], s.labels["error_type"]): s.value
        for s in series(samples, "llmpulse_checks_total")
    }
    assert counted == {
        ("stream", ""): 1,
        ("inference", ""): 1,
        ("inference", "unavailable"): 1,
        ("stream", "rate_limited"): 1,
        ("models", ""): 1,
    }
    (one, *_) = series(samples, "llmpulse_checks_total")
    assert set(one.labels) == {
        "llmpulse_target",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "llmpulse_check",
        "llmpulse_check_kind",
        "error_type",
    }
    assert one.labels["llmpulse_target"] == TARGET
    assert one.labels["gen_ai_provider_name"] == "openai"
    assert one.labels["gen_ai_request_model"] == "gpt-4o-mini"


def test_operation_duration_uses_the_semconv_buckets_and_labels(samples: list[Sample]) -> None:
    name = "gen_ai_client_operation_duration_seconds"
    streamed = {"llmpulse_check": "stream", "error_type": ""}
    les = [s.labels["le"] for s in series(samples, f"{name}_bucket", **streamed)]
    assert les == [
        "0.01", "0.02", "0.04", "0.08", "0.16", "0.32", "0.64", "1.28", "2.56", "5.12",
        "10.24", "20.48", "40.96", "81.92", "+Inf",
    ]  # fmt: skip
    # 1.5 s lies between 1.28 and 2.56.
    assert value(samples, f"{name}_bucket", le="1.28", **streamed) == 0
    assert value(samples, f"{name}_bucket", le="2.56", **streamed) == 1
    assert value(samples, f"{name}_sum", **streamed) == pytest.approx(1.5)
    (bucket, *_) = series(samples, f"{name}_bucket", **streamed)
    assert bucket.labels == {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": SERVED,
        "llmpulse_target": TARGET,
        "llmpulse_check": "stream",
        "llmpulse_check_kind": "stream",
        "error_type": "",
        "le": "0.01",
    }
    # Failures are timed too, under their class; nothing served, so no response model.
    failed = {"llmpulse_check": "inference", "error_type": "unavailable"}
    assert value(samples, f"{name}_count", gen_ai_response_model="", **failed) == 1
    assert value(samples, f"{name}_bucket", le="0.16", **failed) == 1
    assert value(samples, f"{name}_bucket", le="0.08", **failed) == 0
    listed = series(samples, f"{name}_count", llmpulse_check="models")
    assert [s.labels["gen_ai_operation_name"] for s in listed] == ["list_models"]
    assert len(series(samples, f"{name}_count")) == 5


def test_time_to_first_chunk_only_for_streams_that_produced_text(samples: list[Sample]) -> None:
    name = "gen_ai_client_operation_time_to_first_chunk_seconds"
    (count,) = series(samples, f"{name}_count")
    assert count.value == 1
    assert count.labels["llmpulse_check"] == "stream"
    assert "error_type" not in count.labels
    assert value(samples, f"{name}_bucket", le="0.16") == 0
    assert value(samples, f"{name}_bucket", le="0.32") == 1
    assert value(samples, f"{name}_sum") == pytest.approx(0.3)


def test_token_usage_by_token_type(samples: list[Sample]) -> None:
    name = "gen_ai_client_token_usage"
    sums = {
        (s.labels["llmpulse_check"], s.labels["gen_ai_token_type"]): s.value
        for s in series(samples, f"{name}_sum")
    }
    # Failures and the models list used no tokens: they have no token series at all.
    assert sums == {
        ("stream", "input"): 12,
        ("stream", "output"): 40,
        ("inference", "input"): 12,
        ("inference", "output"): 5,
    }
    out = {"llmpulse_check": "stream", "gen_ai_token_type": "output"}
    assert value(samples, f"{name}_bucket", le="16.0", **out) == 0
    assert value(samples, f"{name}_bucket", le="64.0", **out) == 1


def test_estimated_tokens_are_not_reported_as_usage() -> None:
    exporter = MetricsExporter()
    result = ok_stream()
    result.usage = Usage(input_tokens=12, output_tokens=40, estimated=True)
    exporter.observe(result)
    samples = scrape(exporter)
    assert series(samples, "gen_ai_client_token_usage_count") == []
    assert value(samples, "llmpulse_checks_total") == 1


def test_tokens_per_second_and_cost(samples: list[Sample]) -> None:
    (count,) = series(samples, "llmpulse_tokens_per_second_count")
    assert count.value == 1
    assert value(samples, "llmpulse_tokens_per_second_bucket", le="75.0") == 0
    assert value(samples, "llmpulse_tokens_per_second_bucket", le="100.0") == 1
    costs = {
        s.labels["llmpulse_check"]: s.value for s in series(samples, "llmpulse_cost_usd_total")
    }
    assert costs == pytest.approx({"stream": 0.00003, "inference": 0.00001})


def test_context_utilization_histogram() -> None:
    exporter = MetricsExporter()
    for tokens, window in ((12, 128000), (60000, 128000), (120000, 128000), (12, None)):
        result = ok_stream()
        result.usage = Usage(input_tokens=tokens, output_tokens=40)
        result.context_window = window  # unknown for the last: it counts nowhere
        exporter.observe(result)
    failed = unavailable()  # a window, but no input tokens: nothing either
    failed.context_window = 128000
    exporter.observe(failed)
    samples = scrape(exporter)
    name = "llmpulse_context_utilization_ratio"
    (count,) = series(samples, f"{name}_count")
    assert count.value == 3
    assert set(count.labels) == {
        "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
        "gen_ai_response_model", "llmpulse_target", "llmpulse_check", "llmpulse_check_kind",
    }  # fmt: skip
    assert (count.labels["llmpulse_check"], count.labels["gen_ai_response_model"]) == (
        "stream",
        SERVED,
    )
    assert value(samples, f"{name}_sum") == pytest.approx((12 + 60000 + 120000) / 128000)
    buckets = {s.labels["le"]: s.value for s in series(samples, f"{name}_bucket")}
    assert buckets == {
        "0.01": 1, "0.05": 1, "0.1": 1, "0.25": 1, "0.5": 2, "0.75": 2, "0.8": 2, "0.9": 2,
        "0.95": 3, "1.0": 3, "+Inf": 3,
    }  # fmt: skip


def test_snapshot_gauges(samples: list[Sample]) -> None:
    status = {
        (s.labels["llmpulse_target"], s.labels["status"]): s.value
        for s in series(samples, "llmpulse_target_status")
    }
    assert status == {
        (TARGET, "up"): 0,
        (TARGET, "degraded"): 0,
        (TARGET, "rate_limited"): 0,
        (TARGET, "down"): 1,
        (TARGET, "unknown"): 0,
        ("gemini/flash", "up"): 0,
        ("gemini/flash", "degraded"): 0,
        ("gemini/flash", "rate_limited"): 0,
        ("gemini/flash", "down"): 0,
        ("gemini/flash", "unknown"): 1,
    }
    # Figures a target does not have yet are absent, never 0.
    (availability,) = series(samples, "llmpulse_target_availability_ratio")
    assert availability.value == 0.75
    assert availability.labels == {
        "llmpulse_target": TARGET,
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "llmpulse_window": "1h",
    }
    (utilization,) = series(samples, "llmpulse_target_ratelimit_utilization_ratio")
    assert utilization.value == 0.8
    official = {
        s.labels["indicator"]: s.value for s in series(samples, "llmpulse_provider_official_status")
    }
    assert official == {
        "none": 0,
        "minor": 0,
        "major": 1,
        "critical": 0,
        "maintenance": 0,
        "unknown": 0,
    }


def test_a_custom_probe_is_its_own_check_and_wrong_answers_their_own_class() -> None:
    """The check label is the probe's name, the kind label its kind; a wrong answer counts
    under error_type="assertion", so the correctness rate is a PromQL ratio of the counter,
    and the snapshot's correct-rate gauge sits beside availability."""
    exporter = MetricsExporter(
        lambda: Snapshot(
            targets=(
                TargetSnapshot(
                    TARGET, "openai", "gpt-4o-mini", Status.DEGRADED, 1.0, correct_rate=0.6
                ),
            ),
            availability_window="1h",
        )
    )
    for ok in (True, True, True, False, False):
        error = None if ok else ErrorClass.ASSERTION
        exporter.observe(
            CheckResult(
                TARGET,
                "openai",
                "gpt-4o-mini",
                "capital",
                datetime.now(UTC),
                ok,
                kind=CheckKind.INFERENCE,
                error_class=error,
                latency_ms=400,
            )
        )
    exporter.observe(ok_stream())
    samples = scrape(exporter)
    counted = {
        (s.labels["llmpulse_check"], s.labels["llmpulse_check_kind"], s.labels["error_type"]): (
            s.value
        )
        for s in series(samples, "llmpulse_checks_total")
    }
    assert counted == {
        ("capital", "inference", ""): 3,
        ("capital", "inference", "assertion"): 2,
        ("stream", "stream", ""): 1,
    }
    duration = series(
        samples, "gen_ai_client_operation_duration_seconds_count", llmpulse_check="capital"
    )
    assert {s.labels["gen_ai_operation_name"] for s in duration} == {"chat"}
    (correct,) = series(samples, "llmpulse_target_correct_ratio")
    assert correct.value == 0.6 and correct.labels["llmpulse_window"] == "1h"
    (availability,) = series(samples, "llmpulse_target_availability_ratio")
    assert availability.value == 1.0


def test_snapshot_is_read_at_every_scrape() -> None:
    current = [Status.UP]

    def read() -> Snapshot:
        return Snapshot(targets=(TargetSnapshot(TARGET, "openai", "gpt-4o-mini", current[0]),))

    exporter = MetricsExporter(read)
    assert value(scrape(exporter), "llmpulse_target_status", status="up") == 1
    current[0] = Status.RATE_LIMITED
    samples = scrape(exporter)
    assert value(samples, "llmpulse_target_status", status="up") == 0
    assert value(samples, "llmpulse_target_status", status="rate_limited") == 1


def test_a_failing_snapshot_leaves_out_the_gauges_not_the_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("store closed")

    exporter = MetricsExporter(broken)
    exporter.observe(ok_stream())
    with caplog.at_level(logging.ERROR):
        samples = scrape(exporter)
    assert value(samples, "llmpulse_checks_total") == 1
    assert series(samples, "llmpulse_target_status") == []
    assert "metrics snapshot failed" in caplog.text


def test_semconv_provider_names_everywhere() -> None:
    exporter = MetricsExporter(
        lambda: Snapshot(
            targets=(TargetSnapshot("g", "gemini", "gemini-2.0-flash", Status.UP),),
            official={"gemini": "none"},
        )
    )
    exporter.observe(check(CheckKind.MODELS, target="g", provider="gemini", latency_ms=50))
    samples = scrape(exporter)
    providers = {
        s.labels["gen_ai_provider_name"] for s in samples if "gen_ai_provider_name" in s.labels
    }
    assert providers == {"gcp.gemini"}


def test_two_exporters_do_not_share_state() -> None:
    first, second = MetricsExporter(snapshot), MetricsExporter()
    first.observe(ok_stream())
    first.observe(ok_stream())
    second.observe(unavailable())
    a, b = scrape(first), scrape(second)
    assert value(a, "llmpulse_checks_total") == 2
    assert value(b, "llmpulse_checks_total") == 1
    assert series(a, "llmpulse_checks_total", error_type="unavailable") == []
    assert series(b, "llmpulse_target_status") == []
    assert series(a, "llmpulse_target_status") != []


def test_openmetrics_when_the_scraper_asks_for_it(samples: list[Sample]) -> None:
    exporter = MetricsExporter(snapshot)
    for result in all_results():
        exporter.observe(result)
    body, content_type = exporter.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# UNIT gen_ai_client_operation_duration_seconds seconds" in text
    names = {s.name for f in openmetrics_families(text) for s in f.samples}
    assert {s.name for s in samples} <= names


def test_no_key_url_or_message_in_the_exposition(samples: list[Sample]) -> None:
    exporter = MetricsExporter(snapshot)
    for result in all_results():
        exporter.observe(result)
    text = exporter.render()[0].decode()
    assert SECRET not in text
    assert "://" not in text
    allowed = {
        "llmpulse_target",
        "llmpulse_check",
        "llmpulse_check_kind",
        "llmpulse_window",
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "gen_ai_token_type",
        "error_type",
        "status",
        "indicator",
        "le",
    }
    assert {label for s in samples for label in s.labels} == allowed


def test_served_models_are_bounded_per_target() -> None:
    exporter = MetricsExporter()
    for i in range(3 * MAX_RESPONSE_MODELS):
        result = ok_inference()
        result.response_model = f"gpt-4o-mini-{i}"
        exporter.observe(result)
    served = {
        s.labels["gen_ai_response_model"]: s.value
        for s in series(scrape(exporter), "gen_ai_client_operation_duration_seconds_count")
    }
    assert len(served) == MAX_RESPONSE_MODELS + 1
    assert served["_OTHER"] == 2 * MAX_RESPONSE_MODELS
    assert served["gpt-4o-mini-0"] == 1


def test_a_failure_without_a_class_is_other() -> None:
    exporter = MetricsExporter()
    exporter.observe(check(CheckKind.INFERENCE, ok=False, latency_ms=10))
    assert value(scrape(exporter), "llmpulse_checks_total", error_type="_OTHER") == 1


# --- The Grafana dashboard ---------------------------------------------------------------------

_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_OPERATORS = {"or", "and", "unless", "bool", "offset", "group_left", "group_right"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression refers to."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    labels = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in _GROUPING.findall(expr):
        labels |= set(re.findall(r"[a-zA-Z_]\w*", grouping))
    expr = _GROUPING.sub("", re.sub(r"\{[^}]*\}", "", expr))
    # What is left: functions (followed by "("), numbers, operators and metric names.
    words = set(re.findall(r"\b[a-zA-Z_]\w*\b(?!\s*\()", expr))
    return words - _OPERATORS, labels


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert match, variable["definition"]
        queries.append(f"count by ({match.group(2)}) ({match.group(1)})")
    return queries


def test_promql_names() -> None:
    metrics, labels = promql_names(
        'histogram_quantile(0.95, sum by (le, a) (rate(m_bucket{b=~"x{1}", c!=""}[5m])))'
        " / ignoring (d) group_left sum(n_total) or o * 2"
    )
    assert metrics == {"m_bucket", "n_total", "o"}
    assert labels == {"le", "a", "b", "c", "d"}


def gateway_samples() -> list[Sample]:
    """The gateway's own /metrics (``gateway.metrics``) after a fallback and a cool-down."""
    from llmpulse.config.litellm import parse_gateway
    from llmpulse.gateway.metrics import GatewayMetrics
    from llmpulse.gateway.selector import Selector

    entries = [
        {"model_name": "chat", "litellm_params": {"model": f"openai/{m}", "api_key": "sk-x"}}
        for m in ("a", "b")
    ]
    config = parse_gateway({"model_list": entries}, env={})
    assert config is not None
    selector = Selector()
    first, second = config.deployments
    selector.breaker(first.id).record_failure(ErrorClass.RATE_LIMITED)
    metrics = GatewayMetrics(config, lambda: selector)
    result = check(CheckKind.INFERENCE, target=second.name, source=Source.TRAFFIC, attempts=3)
    result.route, result.fallback_reason = [first.name, second.name], ErrorClass.RATE_LIMITED
    result.http_status, result.ratelimit = 200, RateLimit(requests_remaining=9)
    metrics.observe(result)
    body, _ = metrics.render()
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def test_every_dashboard_query_refers_to_exposed_metrics_and_labels(
    samples: list[Sample],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    labels_of: dict[str, set[str]] = {}
    for s in [*samples, *gateway_samples()]:
        labels_of.setdefault(s.name, set()).update(s.labels)
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 12
    used: set[str] = set()
    for query in queries:
        metrics, labels = promql_names(query)
        assert metrics, query
        assert metrics <= set(labels_of), f"{query}: {metrics - set(labels_of)} not exposed"
        available = set().union(*(labels_of[m] for m in metrics))
        assert labels <= available, f"{query}: labels {labels - available} not exposed"
        used |= metrics
    # Every metric family the exporter has is charted somewhere.
    families = {
        "llmpulse_target_status",
        "llmpulse_target_availability_ratio",
        "llmpulse_target_ratelimit_utilization_ratio",
        "llmpulse_provider_official_status",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_token_usage_sum",
        "llmpulse_tokens_per_second_bucket",
        "llmpulse_context_utilization_ratio_bucket",
        "llmpulse_checks_total",
        "llmpulse_cost_usd_total",
        # The gateway's own /metrics.
        "llmpulse_gateway_requests_total",
        "llmpulse_gateway_fallbacks_total",
        "llmpulse_gateway_retries_total",
        "llmpulse_gateway_cooldown_active",
        "llmpulse_gateway_breaker_trips_total",
        "litellm_deployment_state",
    }
    assert families <= used


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert dashboard["id"] is None
    (source,) = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"provider", "target", "group"}
    assert all(v["datasource"] == datasource for v in variables.values())
    required = {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in required
        assert panel["datasource"] == datasource
        for target in panel["targets"]:
            assert target["datasource"] == datasource
            # Every panel follows the provider and target selection; the gateway's, the group.
            selector = '=~"$group"' if "gateway" in panel["title"].lower() else '=~"$provider"'
            assert selector in target["expr"], panel["title"]


def test_series_merge_where_a_family_leaves_out_a_label() -> None:
    exporter = MetricsExporter()
    for served in ("gpt-4o-mini-a", "gpt-4o-mini-b"):
        result = ok_stream()
        result.response_model = served
        result.latency_ms = 1280.0  # exactly a bucket bound: counted in it (le is <=)
        exporter.observe(result)
    samples = scrape(exporter)
    # Checks and cost carry no served model: one series each, the two results summed.
    assert value(samples, "llmpulse_checks_total", llmpulse_check="stream") == 2
    assert value(samples, "llmpulse_cost_usd_total") == pytest.approx(0.00006)
    durations = series(samples, "gen_ai_client_operation_duration_seconds_bucket", le="1.28")
    assert sorted(s.labels["gen_ai_response_model"] for s in durations) == [
        "gpt-4o-mini-a", "gpt-4o-mini-b"
    ]  # fmt: skip
    assert all(s.value == 1 for s in durations)


def test_spend_by_key_and_team_is_bounded_and_counts_from_midnight() -> None:
    midnight = 1_800_000_000 // 86400 * 86400
    keys = [(f"k{i:03d}", "traffic", 1000.0 - i, 10 * i, i) for i in range(SPEND_SERIES + 5)]
    rows = [*keys, (None, "probe", 0.5, 7, 3)]
    counters = SpendSeries()
    spend = [
        *counters.bounded("key", rows, midnight),
        *counters.bounded("team", [("search", "traffic", 2.0, 1, 1)], midnight),
    ]
    got = scrape(MetricsExporter(lambda: Snapshot(spend=spend, spend_since=midnight)))
    usd = series(got, "llmpulse_key_spend_usd_total", source="traffic")
    # The largest spenders by name, the rest as one _OTHER series per source.
    assert len(usd) == SPEND_SERIES + 1
    assert value(got, "llmpulse_key_spend_usd_total", llmpulse_key="k000", source="traffic") == 1000
    assert value(got, "llmpulse_key_spend_usd_total", llmpulse_key=OTHER, source="traffic") == sum(
        1000.0 - i for i in range(SPEND_SERIES, SPEND_SERIES + 5)
    )
    # Probes name no key: their spend is apart, under llmpulse_key="".
    assert value(got, "llmpulse_key_spend_usd_total", llmpulse_key="", source="probe") == 0.5
    assert (
        value(got, "llmpulse_key_tokens_total", llmpulse_key="k002", source="traffic",
              gen_ai_token_type="input") == 20
    )  # fmt: skip
    assert value(got, "llmpulse_team_spend_usd_total", llmpulse_team="search") == 2.0
    assert value(got, "llmpulse_team_spend_usd_created", llmpulse_team="search") == midnight


def test_spend_counters_never_go_down_within_a_day() -> None:
    """A name that climbs into the largest spenders keeps its place in ``_OTHER`` (moving it out
    would lower ``_OTHER``), and a sum read a few bits lower (an hour's raw rows summed again as
    its rollup) shows the last value: to ``rate()`` a counter that goes down has reset."""
    midnight = 1_800_000_000 // 86400 * 86400
    counters = SpendSeries()

    def spend(
        rows: list[tuple[str | None, str, float, int, int]], since: float
    ) -> dict[str, float]:
        got = counters.bounded("key", sorted(rows, key=lambda r: -r[2]), since)
        return {s.name: s.cost_usd for s in got}

    keys = [(f"k{i:03d}", "traffic", 1000.0 - i, 1, 1) for i in range(SPEND_SERIES)]
    first = spend([*keys, ("late", "traffic", 1.0, 1, 1)], midnight)
    assert first[OTHER] == 1.0 and "late" not in first
    # "late" now spends more than anyone; k000's sum comes back a few bits lower.
    keys[0] = ("k000", "traffic", 1000.0 - 1e-12, 1, 1)
    second = spend([*keys, ("late", "traffic", 5000.0, 1, 1)], midnight)
    assert "late" not in second and second[OTHER] == 5000.0
    assert second["k000"] == 1000.0
    assert len(second) == SPEND_SERIES + 1
    # A new day counts from zero: the largest spenders are chosen again.
    third = spend([("late", "traffic", 3.0, 1, 1)], midnight + 86400)
    assert third == {"late": 3.0}
