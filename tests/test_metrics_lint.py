"""The promtool rules the /metrics tests run find what promtool would."""

from __future__ import annotations

from tests.metrics_lint import lint

BAD = """\
# HELP podnet_events cumulative events
# TYPE podnet_events gauge
podnet_events 3
# HELP podnet_latency_ms
# TYPE podnet_latency_ms gauge
podnet_latency_ms{podName="x"} 1
# HELP podnet_requests requests
# TYPE podnet_requests counter
podnet_requests 1
# HELP podnet_size_total a size
# TYPE podnet_size_total gauge
podnet_size_total 1
"""


def test_each_rule_promtool_checks_is_reported() -> None:
    assert lint(BAD) == [
        'podnet_latency_ms: label podName is not snake_case',
        'podnet_latency_ms: no help text',
        'podnet_latency_ms: use base unit "seconds" instead of "ms"',
        'podnet_requests: counter metrics should have "_total" suffix',
        'podnet_size_total: non-counter metrics should not have "_total" suffix',
    ]


def test_a_clean_exposition_passes() -> None:
    assert lint("# HELP podnet_x_total x\n# TYPE podnet_x_total counter\npodnet_x_total 1\n") == []
