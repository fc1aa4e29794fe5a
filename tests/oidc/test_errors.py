"""AADSTS parsing reads bounded input only, and metric labels come from a closed set."""

from __future__ import annotations

from broker.oidc.errors import MAX_DESCRIPTION, aadsts_code, bounded_description, metric_label


def test_only_bounded_digit_runs_are_codes() -> None:
    assert aadsts_code("AADSTS50105: not assigned") == 50105
    assert aadsts_code("AADSTS" + "9" * 5000) is None
    assert aadsts_code("x", (10**40, 50020)) == 50020
    assert aadsts_code("x" * (MAX_DESCRIPTION + 10) + "AADSTS50105") is None  # read after the cut
    assert len(bounded_description("y" * 100_000)) == MAX_DESCRIPTION


def test_metric_labels_are_explained_codes_or_other() -> None:
    assert metric_label(50105) == "50105"
    assert metric_label(123456789) == "other"
    assert metric_label(None) == ""
