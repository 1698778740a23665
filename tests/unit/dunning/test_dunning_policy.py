"""dunning/policy.py: which reminder is current, when service is suspended, quiet hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ispbill.dunning.policy import (
    DEFAULT_LADDER,
    Channel,
    InvoiceState,
    LadderStep,
    MessageKind,
    SubscriberState,
    current_step,
    quiet_release,
    should_suspend,
    suspension_on,
)

DHAKA = ZoneInfo("Asia/Dhaka")
DUE = date(2026, 12, 10)
GRACE = 3
BOTH = (Channel.SMS, Channel.EMAIL)
R, T, O = MessageKind.REMINDER, MessageKind.DUE_TODAY, MessageKind.OVERDUE


def invoice(due_on: date = DUE, amount_due_paisa: int = 100_000, status: str = "open") -> InvoiceState:
    return InvoiceState(due_on=due_on, amount_due_paisa=amount_due_paisa, status=status)


def subscriber(**changes) -> SubscriberState:
    return SubscriberState(**{"status": "active", "has_phone": True, "has_email": True, **changes})


def kind_on(offset: int, *, inv: InvoiceState | None = None, sub: SubscriberState | None = None,
            ladder=DEFAULT_LADDER, grace_days: int = GRACE) -> MessageKind | None:
    inv = inv or invoice()
    step = current_step(inv, sub or subscriber(), ladder, inv.due_on + timedelta(days=offset), grace_days=grace_days)
    return None if step is None else step.step.kind


# -- the default ladder, day by day ------------------------------------------------------

@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-8, None), (-7, None), (-6, None),
        (-5, R), (-4, R), (-3, R), (-2, R), (-1, R),
        (0, T),
        (1, O), (2, O), (3, O),  # grace 3: overdue until the suspension day
        (4, None), (5, None), (6, None), (7, None), (8, None),  # due + grace + 1 onwards: suspension's turn
    ],
)
def test_default_ladder_each_day_around_the_due_date(offset, expected):
    assert kind_on(offset) == expected


def test_current_step_reports_the_step_and_both_channels():
    found = current_step(invoice(), subscriber(), DEFAULT_LADDER, DUE - timedelta(days=2), grace_days=GRACE)
    assert found is not None
    assert found.step == DEFAULT_LADDER[0]
    assert found.step.key == "-5"
    assert found.channels == BOTH
    assert [s.key for s in DEFAULT_LADDER] == ["-5", "+0", "+1"]


@pytest.mark.parametrize(
    ("override", "offset", "expected"),
    [
        # grace 0: the +1 step is still current on its own day, and only then.
        (0, 0, T), (0, 1, O), (0, 2, None), (0, 3, None),
        # grace 10: the +1 step stays current through due + 10; due + 11 suspends.
        (10, 1, O), (10, 4, O), (10, 10, O), (10, 11, None), (10, 12, None),
    ],
)
def test_grace_override_moves_the_end_of_the_last_step(override, offset, expected):
    sub = subscriber(grace_days_override=override)
    assert kind_on(offset, sub=sub, grace_days=GRACE) == expected


@pytest.mark.parametrize("grace", [0, 1, 3, 10])
def test_default_grace_also_moves_the_end_of_the_last_step(grace):
    assert kind_on(grace, grace_days=grace) == (O if grace >= 1 else T)
    assert kind_on(grace + 1, grace_days=grace) == (None if grace >= 1 else O)
    assert kind_on(max(grace + 1, 2), grace_days=grace) is None


# -- what the invoice and the subscriber allow -------------------------------------------

@pytest.mark.parametrize(
    ("status", "amount", "collectable"),
    [
        ("open", 100_000, True),
        ("partially_paid", 40_000, True),
        ("paid", 0, False),
        ("paid", 100_000, False),  # status wins even if an amount lingers
        ("void", 100_000, False),
        ("open", 0, False),
        ("partially_paid", 0, False),
    ],
)
@pytest.mark.parametrize("offset", [-5, 0, 1, 3])
def test_only_collectable_invoices_get_reminders(status, amount, collectable, offset):
    inv = invoice(status=status, amount_due_paisa=amount)
    assert (kind_on(offset, inv=inv) is not None) is collectable
    # ...and only they suspend
    assert should_suspend(inv, subscriber(), DUE + timedelta(days=GRACE + 1), grace_days=GRACE) is collectable


@pytest.mark.parametrize("offset", range(-8, 9))
def test_disabled_subscriber_gets_nothing(offset):
    sub = subscriber(status="disabled")
    assert kind_on(offset, sub=sub) is None
    assert should_suspend(invoice(), sub, DUE + timedelta(days=offset), grace_days=GRACE) is False


@pytest.mark.parametrize(("offset", "expected"), [(-5, R), (0, T), (1, O), (3, O), (4, None)])
def test_never_suspend_still_gets_reminders(offset, expected):
    sub = subscriber(never_suspend=True)
    assert kind_on(offset, sub=sub) == expected


@pytest.mark.parametrize("offset", [GRACE + 1, GRACE + 2, 60, 365])
def test_never_suspend_is_never_suspended(offset):
    sub = subscriber(never_suspend=True)
    assert should_suspend(invoice(), sub, DUE + timedelta(days=offset), grace_days=GRACE) is False


@pytest.mark.parametrize(("offset", "expected"), [(-5, R), (0, T), (1, O), (3, O)])
def test_suspended_subscriber_still_gets_reminders(offset, expected):
    assert kind_on(offset, sub=subscriber(status="suspended")) == expected


def test_suspended_subscriber_is_not_suspended_again():
    sub = subscriber(status="suspended")
    assert should_suspend(invoice(), sub, DUE + timedelta(days=GRACE + 1), grace_days=GRACE) is False
    assert should_suspend(invoice(), sub, DUE + timedelta(days=30), grace_days=GRACE) is False


@pytest.mark.parametrize(
    ("has_phone", "has_email", "channels"),
    [
        (True, True, (Channel.SMS, Channel.EMAIL)),
        (True, False, (Channel.SMS,)),
        (False, True, (Channel.EMAIL,)),
        (False, False, None),  # nobody to reach: no step at all
    ],
)
def test_channels_are_those_the_subscriber_can_receive(has_phone, has_email, channels):
    sub = subscriber(has_phone=has_phone, has_email=has_email)
    found = current_step(invoice(), sub, DEFAULT_LADDER, DUE, grace_days=GRACE)
    assert (None if found is None else found.channels) == channels


def test_email_only_step_for_a_subscriber_without_email_is_skipped():
    ladder = (LadderStep(-5, R, (Channel.EMAIL,)), LadderStep(0, T, BOTH))
    sub = subscriber(has_email=False)
    assert current_step(invoice(), sub, ladder, DUE - timedelta(days=3), grace_days=GRACE) is None
    # the later step is not brought forward in its place
    assert kind_on(-3, sub=sub, ladder=ladder) is None
    assert kind_on(0, sub=sub, ladder=ladder) == T


def test_subscriber_state_defaults_to_sms_only():
    found = current_step(invoice(), SubscriberState(status="active"), DEFAULT_LADDER, DUE, grace_days=GRACE)
    assert found is not None and found.channels == (Channel.SMS,)


# -- calendar edges ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("due_on", "day", "expected"),
    [
        # 31 January: overdue runs into February
        (date(2026, 1, 31), date(2026, 1, 25), None),
        (date(2026, 1, 31), date(2026, 1, 26), R),
        (date(2026, 1, 31), date(2026, 1, 31), T),
        (date(2026, 1, 31), date(2026, 2, 1), O),
        (date(2026, 1, 31), date(2026, 2, 3), O),
        (date(2026, 1, 31), date(2026, 2, 4), None),
        # 28 February in a common year
        (date(2026, 2, 28), date(2026, 2, 23), R),
        (date(2026, 2, 28), date(2026, 2, 28), T),
        (date(2026, 2, 28), date(2026, 3, 1), O),
        (date(2026, 2, 28), date(2026, 3, 3), O),
        (date(2026, 2, 28), date(2026, 3, 4), None),
        # 29 February in a leap year
        (date(2028, 2, 29), date(2028, 2, 23), None),
        (date(2028, 2, 29), date(2028, 2, 24), R),
        (date(2028, 2, 29), date(2028, 2, 29), T),
        (date(2028, 2, 29), date(2028, 3, 1), O),
        (date(2028, 2, 29), date(2028, 3, 3), O),
        (date(2028, 2, 29), date(2028, 3, 4), None),
        # 31 December: overdue in the new year
        (date(2026, 12, 31), date(2026, 12, 26), R),
        (date(2026, 12, 31), date(2026, 12, 31), T),
        (date(2026, 12, 31), date(2027, 1, 1), O),
        (date(2026, 12, 31), date(2027, 1, 3), O),
        (date(2026, 12, 31), date(2027, 1, 4), None),
        # 1 January: reminders in the old year
        (date(2027, 1, 1), date(2026, 12, 26), None),
        (date(2027, 1, 1), date(2026, 12, 27), R),
        (date(2027, 1, 1), date(2026, 12, 31), R),
        (date(2027, 1, 1), date(2027, 1, 1), T),
        (date(2027, 1, 1), date(2027, 1, 2), O),
    ],
)
def test_month_and_year_ends(due_on, day, expected):
    step = current_step(invoice(due_on=due_on), subscriber(), DEFAULT_LADDER, day, grace_days=GRACE)
    assert (None if step is None else step.step.kind) == expected


@pytest.mark.parametrize(
    ("due_on", "suspends_on"),
    [
        (date(2026, 1, 31), date(2026, 2, 4)),
        (date(2026, 2, 28), date(2026, 3, 4)),
        (date(2028, 2, 29), date(2028, 3, 4)),
        (date(2026, 12, 31), date(2027, 1, 4)),
    ],
)
def test_suspension_date_across_month_ends(due_on, suspends_on):
    assert suspension_on(due_on, GRACE) == suspends_on
    inv = invoice(due_on=due_on)
    assert should_suspend(inv, subscriber(), suspends_on, grace_days=GRACE) is True
    assert should_suspend(inv, subscriber(), suspends_on - timedelta(days=1), grace_days=GRACE) is False


# -- custom ladders ---------------------------------------------------------------------

def test_unsorted_ladder_behaves_like_the_sorted_one():
    shuffled = (DEFAULT_LADDER[2], DEFAULT_LADDER[0], DEFAULT_LADDER[1])
    for offset in range(-8, 9):
        assert kind_on(offset, ladder=shuffled) == kind_on(offset), offset
        assert kind_on(offset, ladder=list(shuffled)) == kind_on(offset), offset


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(-4, None), (-3, R), (0, R), (3, R), (4, None)],  # one step: current until the suspension day
)
def test_single_step_ladder(offset, expected):
    assert kind_on(offset, ladder=(LadderStep(-3, R, BOTH),)) == expected


def test_single_step_after_the_suspension_day_is_still_current_on_its_own_day():
    ladder = (LadderStep(7, O, (Channel.SMS,)),)
    assert kind_on(6, ladder=ladder) is None
    assert kind_on(7, ladder=ladder) == O
    assert kind_on(8, ladder=ladder) is None


@pytest.mark.parametrize("offset", range(-8, 9))
def test_empty_ladder_sends_nothing(offset):
    assert kind_on(offset, ladder=()) is None


def test_longer_custom_ladder():
    ladder = (
        LadderStep(-7, R, (Channel.EMAIL,)),
        LadderStep(-2, R, BOTH),
        LadderStep(0, T, (Channel.SMS,)),
        LadderStep(2, O, BOTH),
    )
    got = {}
    for offset in range(-8, 7):
        step = current_step(invoice(), subscriber(), ladder, DUE + timedelta(days=offset), grace_days=GRACE)
        got[offset] = None if step is None else step.step.key
    assert got == {
        -8: None, -7: "-7", -6: "-7", -5: "-7", -4: "-7", -3: "-7", -2: "-2", -1: "-2",
        0: "+0", 1: "+0", 2: "+2", 3: "+2", 4: None, 5: None, 6: None,
    }


# -- suspension -------------------------------------------------------------------------

@pytest.mark.parametrize("grace", [0, 1, 3, 10])
def test_should_suspend_exactly_on_due_plus_grace_plus_one(grace):
    inv = invoice()
    assert should_suspend(inv, subscriber(), DUE + timedelta(days=grace), grace_days=grace) is False
    assert should_suspend(inv, subscriber(), DUE + timedelta(days=grace + 1), grace_days=grace) is True
    assert should_suspend(inv, subscriber(), DUE + timedelta(days=grace + 30), grace_days=grace) is True


@pytest.mark.parametrize("override", [0, 10])
def test_should_suspend_honours_the_grace_override(override):
    sub = subscriber(grace_days_override=override)
    assert should_suspend(invoice(), sub, DUE + timedelta(days=override), grace_days=GRACE) is False
    assert should_suspend(invoice(), sub, DUE + timedelta(days=override + 1), grace_days=GRACE) is True


def test_should_not_suspend_before_or_on_the_due_date():
    for offset in range(-8, 1):
        assert should_suspend(invoice(), subscriber(), DUE + timedelta(days=offset), grace_days=0) is False


def test_suspension_day_follows_the_last_ladder_day():
    """No gap: the overdue step ends the day before suspension starts, except with grace 0,
    where it still gets its own day (the suspension day, due + 1)."""
    for grace in range(0, 15):
        last_reminder = max(o for o in range(-8, 30) if kind_on(o, grace_days=grace) is not None)
        first_suspension = min(o for o in range(-8, 30) if should_suspend(invoice(), subscriber(), DUE + timedelta(days=o), grace_days=grace))
        assert first_suspension == max(grace + 1, 1)
        assert last_reminder == max(grace, 1)


# -- quiet hours ------------------------------------------------------------------------

NIGHT = {"start": time(21, 0), "end": time(8, 0)}


def dhaka(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=DHAKA)


@pytest.mark.parametrize(
    ("local_now", "release"),
    [
        (dhaka(25, 20, 59), None),
        (dhaka(25, 21, 0), dhaka(26, 8, 0)),
        (dhaka(25, 23, 30), dhaka(26, 8, 0)),
        (dhaka(26, 0, 30), dhaka(26, 8, 0)),
        (dhaka(26, 7, 59), dhaka(26, 8, 0)),
        (dhaka(26, 8, 0), None),
        (dhaka(26, 12, 0), None),
        (dhaka(30, 23, 0), dhaka(1, 8, 0, month=12)),  # across the month end
    ],
)
def test_quiet_hours_crossing_midnight(local_now, release):
    got = quiet_release(local_now, **NIGHT)
    assert got == release
    if got is not None:
        assert got.utcoffset() == timedelta(hours=6)
        assert got > local_now


@pytest.mark.parametrize(
    ("local_now", "release"),
    [
        (dhaka(25, 12, 59), None),
        (dhaka(25, 13, 0), dhaka(25, 14, 0)),
        (dhaka(25, 13, 59), dhaka(25, 14, 0)),
        (dhaka(25, 14, 0), None),
        (dhaka(25, 23, 0), None),
    ],
)
def test_quiet_hours_within_one_day(local_now, release):
    assert quiet_release(local_now, start=time(13, 0), end=time(14, 0)) == release


@pytest.mark.parametrize("hour", [0, 8, 13, 21, 23])
def test_quiet_hours_with_start_equal_to_end_are_off(hour):
    assert quiet_release(dhaka(25, hour), start=time(21, 0), end=time(21, 0)) is None
    assert quiet_release(dhaka(25, hour), start=time(0, 0), end=time(0, 0)) is None


def test_quiet_hours_are_judged_on_dhaka_clock_not_utc():
    instant = datetime(2026, 11, 30, 18, 30, tzinfo=UTC)  # 00:30 on 1 December in Dhaka
    local = instant.astimezone(DHAKA)
    assert (local.date(), local.time()) == (date(2026, 12, 1), time(0, 30))
    release = quiet_release(local, **NIGHT)
    assert release == datetime(2026, 12, 1, 8, 0, tzinfo=DHAKA)
    assert release == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    # In UTC the same instant is 18:30, outside the window: judging it there would send at once.
    assert quiet_release(instant, **NIGHT) is None


def test_ladder_today_is_the_dhaka_date(settings):
    from ispbill.core.timeutil import local_date

    settings.ISPBILL_TIME_ZONE = "Asia/Dhaka"
    instant = datetime(2026, 11, 30, 18, 30, tzinfo=UTC)
    today = local_date(instant)
    assert today == date(2026, 12, 1)
    inv = invoice(due_on=date(2026, 12, 1))
    assert current_step(inv, subscriber(), DEFAULT_LADDER, today, grace_days=GRACE).step.kind == T
    # The UTC calendar date would still be the day before: a plain reminder.
    assert current_step(inv, subscriber(), DEFAULT_LADDER, instant.date(), grace_days=GRACE).step.kind == R
