"""payments/start_limits.py: the format of ISPBILL_PAY_START_LIMIT and when a start is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ispbill.payments.start_limits import (
    DEFAULT_START_LIMITS,
    StartLimit,
    StartLimitError,
    parse_start_limits,
    refusal,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def limits(text: str = DEFAULT_START_LIMITS) -> tuple[StartLimit, ...]:
    return parse_start_limits(text)


def ago(*deltas: timedelta) -> list[datetime]:
    return [NOW - d for d in deltas]


# -- the format -------------------------------------------------------------------------

def test_the_default():
    assert [(lim.starts, lim.window, str(lim)) for lim in limits()] == [(5, 10 * M, "5/10m"), (20, D, "20/1d")]


@pytest.mark.parametrize(("text", "expected"), [
    ("5/10m", [(5, 10 * M)]),
    ("3/30s", [(3, 30 * S)]),
    ("2/1h", [(2, H)]),
    ("20/1d,5/10m", [(5, 10 * M), (20, D)]),  # shortest window first, whatever the order written
    ("  5/10m ,  20/1d  ", [(5, 10 * M), (20, D)]),
    ("05/010m", [(5, 10 * M)]),
    ("1/31d", [(1, 31 * D)]),
    ("1/744h", [(1, 31 * D)]),
    ("100000/1s", [(100_000, S)]),
])
def test_valid_limits(text, expected):
    assert [(lim.starts, lim.window) for lim in parse_start_limits(text)] == expected


def test_written_back_without_leading_zeros():
    assert [str(lim) for lim in parse_start_limits("05/010m,2/01h")] == ["5/10m", "2/1h"]


@pytest.mark.parametrize(("text", "says"), [
    ("", "no limits given"),
    (" , ", "no limits given"),
    ("5", "'5' is not <starts>/<window>"),
    ("5/", "'5/' is not <starts>/<window>"),
    ("/10m", "'/10m' is not <starts>/<window>"),
    ("5/10", "'5/10' is not <starts>/<window>"),
    ("5/m", "'5/m' is not <starts>/<window>"),
    ("5/10x", "'5/10x' is not <starts>/<window>"),
    ("5/10M", "'5/10M' is not <starts>/<window>"),  # M is not months
    ("5/10min", "'5/10min' is not <starts>/<window>"),
    ("5 / 10m", "'5 / 10m' is not <starts>/<window>"),
    ("-1/10m", "'-1/10m' is not <starts>/<window>"),
    ("5/1.5h", "'5/1.5h' is not <starts>/<window>"),
    ("৫/১০m", "'৫/১০m' is not <starts>/<window>"),  # Latin digits only
    ("5/10m;20/1d", "'5/10m;20/1d' is not <starts>/<window>"),
    ("5/10m,", "'' is not <starts>/<window>"),
    ("0/10m", "'0/10m': the number of starts must be at least 1"),
    ("5/0m", "'5/0m': the window must be at least 1m"),
    ("5/32d", "'5/32d': the window must be at most 31d"),
    ("5/745h", "'5/745h': the window must be at most 31d"),
    ("5/99999999999999999999d", "the window must be at most 31d"),
    ("5/10m,3/600s", "'3/600s': a limit for this window is already given ('5/10m')"),
])
def test_invalid_limits_say_what_is_wrong(text, says):
    with pytest.raises(StartLimitError) as caught:
        parse_start_limits(text)
    assert says in str(caught.value)


# -- the decision -----------------------------------------------------------------------

def test_fewer_starts_than_the_limit_are_allowed():
    assert refusal(limits(), [], now=NOW) is None
    assert refusal(limits(), ago(0 * S, 1 * M, 2 * M, 3 * M), now=NOW) is None


def test_at_the_limit_the_wait_is_until_the_oldest_counted_start_leaves():
    refused = refusal(limits(), ago(1 * M, 2 * M, 3 * M, 4 * M, 5 * M), now=NOW)
    assert (str(refused.limit), refused.started, refused.retry_after) == ("5/10m", 5, 5 * 60)


def test_the_window_is_half_open():
    # A start exactly one window ago has left it; one a microsecond later has not.
    five = ago(S, 2 * S, 3 * S, 4 * S)
    assert refusal(limits("5/10m"), [*five, NOW - 10 * M], now=NOW) is None
    refused = refusal(limits("5/10m"), [*five, NOW - 10 * M + timedelta(microseconds=1)], now=NOW)
    assert refused.retry_after == 1  # rounded up, never 0


def test_the_wait_is_rounded_up_to_whole_seconds():
    refused = refusal(limits("1/1m"), [NOW - timedelta(seconds=20, milliseconds=500)], now=NOW)
    assert refused.retry_after == 40


def test_more_starts_than_the_limit_wait_for_the_limit_th_newest():
    # Seven starts got in at once (simultaneous requests): a start is allowed again when
    # fewer than five remain, i.e. when the fifth newest leaves, not the oldest.
    refused = refusal(limits("5/10m"), ago(S, 2 * S, 3 * S, 4 * S, 5 * M, 9 * M, 9 * M), now=NOW)
    assert (refused.started, refused.retry_after) == (7, 5 * 60)


def test_the_order_given_does_not_matter():
    times = ago(4 * M, 1 * M, 5 * M, 3 * M, 2 * M)
    assert refusal(limits(), times, now=NOW) == refusal(limits(), sorted(times), now=NOW)


def test_the_daily_limit():
    # Twenty starts, three minutes apart, the last an hour ago: the short limit is fine.
    times = [NOW - H - 3 * M * i for i in range(20)]
    refused = refusal(limits(), times, now=NOW)
    assert (str(refused.limit), refused.started) == ("20/1d", 20)
    assert refused.retry_after == int((times[-1] + D - NOW).total_seconds())


def test_when_both_limits_are_reached_the_longer_wait_wins():
    times = [NOW - S * i for i in range(1, 6)] + [NOW - H * i for i in range(1, 16)]
    refused = refusal(limits(), times, now=NOW)
    assert str(refused.limit) == "20/1d"
    assert refused.retry_after == int((NOW - 15 * H + D - NOW).total_seconds())


def test_starts_stamped_ahead_of_now_count():
    # Another process's clock may run slightly ahead: its starts are still counted.
    refused = refusal(limits("1/1m"), [NOW + 2 * S], now=NOW)
    assert refused.retry_after == 62


@given(
    spec=st.lists(
        st.tuples(st.integers(1, 6), st.integers(1, 3 * 24 * 3600)), min_size=1, max_size=3,
        unique_by=lambda t: t[1],
    ),
    offsets=st.lists(st.integers(-5, 3 * 24 * 3600), max_size=30),
)
def test_waiting_retry_after_is_exactly_enough(spec, offsets):
    rules = parse_start_limits(",".join(f"{n}/{secs}s" for n, secs in spec))
    times = [NOW - timedelta(seconds=o, microseconds=o % 7) for o in offsets]
    refused = refusal(rules, times, now=NOW)
    if refused is None:
        for rule in rules:
            assert sum(1 for t in times if t > NOW - rule.window) < rule.starts
        return
    assert refused.retry_after >= 1
    assert refusal(rules, times, now=NOW + timedelta(seconds=refused.retry_after)) is None
    if refused.retry_after > 1:
        assert refusal(rules, times, now=NOW + timedelta(seconds=refused.retry_after - 1)) is not None
