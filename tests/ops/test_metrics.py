"""The metrics page itself (issue 18): no ``*_created`` series next to the counters and histograms."""

from __future__ import annotations

from broker.ops.metrics import Metrics


def test_the_metrics_page_has_no_created_series() -> None:
    metrics = Metrics()
    metrics.answered("127.0.0.1/", 200, 0.01)
    metrics.logins.labels("contoso", "success", "").inc()
    metrics.reload_done(True, 0.0)
    page = metrics.exposition().decode()
    assert "broker_http_requests_total{" in page and "broker_http_request_duration_seconds_bucket{" in page
    assert "_created" not in page
