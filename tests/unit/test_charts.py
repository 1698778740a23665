"""The dashboard's chart data: amounts in integer paisa, one series per gateway."""

from __future__ import annotations

from datetime import date

from django.utils import translation

from ispbill.backoffice import charts


def test_payments_per_day_has_one_series_per_gateway_in_paisa():
    days = [date(2026, 11, 24), date(2026, 11, 25)]
    with translation.override("en"):
        spec = charts.payments_per_day(days, {"bkash": {days[1]: 150050}, "Cash": {days[0]: 40000, days[1]: 1}})
    assert spec["money"] and spec["stacked"] and spec["labels"] == ["24 Nov", "25 Nov"]
    assert [(d["label"], d["data"]) for d in spec["datasets"]] == [("Cash", [40000, 1]), ("bkash", [0, 150050])]
    assert len({d["colour"] for d in spec["datasets"]}) == 2


def test_no_payments_still_draws_an_empty_series():
    spec = charts.payments_per_day([date(2026, 11, 25)], {})
    assert [d["data"] for d in spec["datasets"]] == [[0]]


def test_subscribers_by_status_are_counts_not_money():
    spec = charts.subscribers_by_status({"active": 90, "suspended": 10}, {"active": "Active", "suspended": "Suspended"})
    assert spec["horizontal"] and not spec["money"]
    assert spec["labels"] == ["Active", "Suspended"] and spec["datasets"][0]["data"] == [90, 10]
