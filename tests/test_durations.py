import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpulse.durations import (
    MAX_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
    positive_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12ms", 0.012),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("2m59.56s", 179.56),
        ("1h2m3s", 3723.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("250ms", 0.25),
        ("7d", 604800.0),
        ("1.5", 1.5),
        ("500us", 0.0005),
        ("3µs", 0.000003),
        (" 10s ", 10.0),
        (20, 20.0),
        (0.5, 0.5),
    ],
)
def test_parses_go_and_config_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "10x", "-5s", "5 s", "1h-2m", "abc", -1, True, "nan"])
def test_rejects_non_durations_with_a_clear_message(bad):
    with pytest.raises(DurationError, match=r"duration|negative"):
        parse_duration(bad)


@pytest.mark.parametrize(
    "bad",
    [
        float("nan"), float("inf"), float("-inf"), "inf", "-inf", "Infinity", "nan", "1e400",
        10**400, MAX_SECONDS + 1, "101000d", "99999999999999999999h", [1], {"s": 1}, None,
    ],
)  # fmt: skip
def test_a_duration_is_finite_and_at_most_100_years(bad):
    with pytest.raises(DurationError, match=r"duration"):
        parse_duration(bad)
    assert parse_duration(MAX_SECONDS) == MAX_SECONDS


def test_a_positive_duration_is_more_than_zero():
    for zero in (0, 0.0, "0", "0s", "0ms"):
        with pytest.raises(DurationError, match=r"more than 0"):
            positive_duration(zero)
    assert positive_duration("1ns") == pytest.approx(1e-9)
    with pytest.raises(DurationError, match=r"negative"):
        positive_duration(-1)


@given(st.one_of(st.text(max_size=30), st.floats(), st.integers(), st.none(), st.booleans()))
def test_never_raises_anything_but_duration_error(value):
    with contextlib.suppress(DurationError):
        assert 0 <= parse_duration(value) <= MAX_SECONDS


@given(
    st.integers(0, 99),
    st.integers(0, 59),
    st.floats(0, 59.99, allow_nan=False).map(lambda f: round(f, 2)),
)
def test_go_style_roundtrip(hours, minutes, seconds):
    text = f"{hours}h{minutes}m{seconds}s"
    assert parse_duration(text) == pytest.approx(hours * 3600 + minutes * 60 + seconds)


def test_format_duration():
    assert format_duration(0.85) == "850ms"
    assert format_duration(2.5) == "2.5s"
    assert format_duration(200) == "3m20s"
    assert format_duration(7200) == "2h"
