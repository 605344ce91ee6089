"""Rates, durations and their validation: arithmetic, tested once for both variants."""

from __future__ import annotations

import pickle

import pytest

from pyrate_limiter import BucketFullException, Duration, LimiterDelayException, Rate, RateItem, validate_rate_list


def test_duration_arithmetic_gives_milliseconds() -> None:
    assert Duration.SECOND * 2 == 2000
    assert Duration.WEEK * 4 == 4 * 7 * 24 * 3600 * 1000
    assert Duration.MINUTE + Duration.SECOND == 61_000


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(5, Duration.SECOND * 2), "limit=5/2.0s"),
        (Rate(3, 1000), "limit=3/1.0s"),
        (Rate(4, 1500), "limit=4/1.5s"),
        (Rate(500, Duration.HOUR), "limit=500/1.0h"),
        (Rate(10, 250), "limit=10/250ms"),
    ],
)
def test_rate_string_form(rate: Rate, text: str) -> None:
    assert str(rate) == text


@pytest.mark.parametrize(("limit", "interval"), [(0, 1000), (-1, 1000), (1.5, 1000), (5, 0), (5, -1), (5, "1s")])
def test_rate_refuses_nonsense(limit: object, interval: object) -> None:
    with pytest.raises(ValueError, match="Rate"):
        Rate(limit, interval)  # type: ignore[arg-type]


def test_rate_list_validation_follows_the_docs() -> None:
    hourly, daily, monthly = Rate(500, Duration.HOUR), Rate(1000, Duration.DAY), Rate(10000, Duration.WEEK * 4)
    assert validate_rate_list([hourly, daily, monthly])
    assert not validate_rate_list([])
    assert not validate_rate_list([daily, hourly])
    assert not validate_rate_list([Rate(5, 1000), Rate(5, 2000)])  # limits must grow
    assert not validate_rate_list([Rate(5, 1000), Rate(20, 2000)])  # and the pace must not


def test_values_and_errors_survive_pickling() -> None:
    item, rate = RateItem("k", 10, weight=2), Rate(3, 1000)
    assert pickle.loads(pickle.dumps(item)) == item
    assert pickle.loads(pickle.dumps(rate)) == rate
    full = pickle.loads(pickle.dumps(BucketFullException(item, rate)))
    assert full.meta_info["rate"] == "limit=3/1.0s"
    delayed = pickle.loads(pickle.dumps(LimiterDelayException(item, rate, 900, 200)))
    assert delayed.meta_info["actual_delay"] == 900
