from datetime import timedelta

import pytest

from ispbill.core.backoff import doubling


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(-1, 30), (0, 30), (1, 30), (2, 60), (3, 120), (4, 240), (5, 300), (6, 300), (10_000, 300)],
)
def test_doubling_seconds(attempt, expected):
    assert doubling(30, attempt, 300) == expected


def test_doubling_timedelta_reaches_the_cap_and_stays_there():
    waits = [doubling(timedelta(minutes=2), n, timedelta(hours=1)) for n in range(1, 9)]
    assert waits == [timedelta(minutes=m) for m in (2, 4, 8, 16, 32, 60, 60, 60)]


def test_a_first_wait_above_the_cap_is_capped():
    assert doubling(timedelta(hours=2), 1, timedelta(hours=1)) == timedelta(hours=1)
