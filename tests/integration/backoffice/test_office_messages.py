"""The message log: filters, keyset paging, totals summed by the database, SMS encoding
and segments, and a message's page with its text escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ispbill.backoffice.selectors import PAGE_SIZE
from ispbill.notifications.models import Message
from ispbill.notifications.sms import sms_cost
from ispbill.subscribers.models import Subscriber

from ..billing.billing_support import make_subscriber
from .office_support import NO_ROLE, ROLES

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
XSS = '<script>alert("sms")</script>'
_keys = count()


def message(sub, *, channel="sms", body="Your bill of 1000.00 is due", status="sent", kind="reminder", at=NOW, **extra):
    """A message as the dispatcher leaves it once rendered (SMS: encoding and segments)."""
    if channel == "sms" and body and "segments" not in extra:
        cost = sms_cost(body)
        extra.update(encoding=cost.encoding, segments=cost.segments)
    recipient = extra.pop("recipient", sub.phone if channel == "sms" else sub.email)
    return Message.objects.create(
        subscriber=sub, kind=kind, channel=channel, status=status, dedupe_key=f"test:{next(_keys)}", recipient=recipient,
        body=body, created_at=at, **extra,
    )


def ids(response) -> set[int]:
    return {m.pk for m in response.context["page"].rows}


@pytest.mark.parametrize("params", [{}, {"q": "017", "status": "sent", "channel": "sms", "kind": "reminder", "from": "2026-11-20"}])
def test_list_runs_the_same_queries_for_few_and_many_messages(world, client_for, params):
    client = client_for("viewer")
    counts = []
    for n in (3, 40):
        for _ in range(n - Message.objects.count()):
            message(world["sub"])
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/office/messages/", params)
        assert response.status_code == 200 and response.context["totals"]["count"] == n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 10


def test_totals_count_messages_sms_and_segments_of_the_filtered_set(world, client_for, settings):
    settings.ISPBILL_SMS_SEGMENT_PRICE = "0.35"
    sub = world["sub"]
    long_bangla = "আপনার বিল " * 20  # UCS-2: 200 code units → 3 segments
    gsm = "A" * 161  # GSM-7: 2 segments
    for _ in range(PAGE_SIZE):
        message(sub, body=gsm)
    message(sub, body=long_bangla)
    message(sub, channel="email", body="Dear subscriber")
    message(sub, status="queued", body="")  # not rendered yet: no segments
    client = client_for("viewer")
    response = client.get("/office/messages/")
    segments = PAGE_SIZE * 2 + 3
    assert response.context["totals"] == {
        "count": PAGE_SIZE + 3, "sms": PAGE_SIZE + 2, "segments": segments, "cost_paisa": segments * 35,
    }
    assert len(response.context["page"].rows) == PAGE_SIZE
    html = response.content.decode()
    assert "GSM-7" in html and "UCS-2" in html
    only_email = client.get("/office/messages/", {"channel": "email"}).context["totals"]
    assert only_email == {"count": 1, "sms": 0, "segments": 0, "cost_paisa": 0}


def test_list_filters(world, client_for):
    sub = world["sub"]
    other = make_subscriber(world["basic"], NOW.date())
    Subscriber.objects.filter(pk=other.pk).update(name="Karim Mia", phone="+8801911222333", email="karim@example.net")
    old = message(sub, at=NOW - timedelta(days=20), kind="overdue", status="dead", error="provider said no")
    receipt = message(sub, kind="receipt")
    email = message(other, channel="email", recipient="karim@example.net", kind="receipt")
    karim_sms = message(other, recipient="+8801911222333", status="queued")
    client = client_for("viewer")
    get = lambda **q: ids(client.get("/office/messages/", q))  # noqa: E731

    assert get(status="dead") == {old.pk}
    assert get(channel="email") == {email.pk}
    assert get(kind="receipt") == {receipt.pk, email.pk}
    assert get(q="karim") == {email.pk, karim_sms.pk}
    assert get(q="01911222") == {email.pk, karim_sms.pk}
    assert get(q="example.net") == {email.pk, karim_sms.pk}
    assert get(**{"from": "2026-11-25"}) == {receipt.pk, email.pk, karim_sms.pk}
    assert get(to="2026-11-06") == {old.pk}
    # A message created at 20:00 UTC on the 24th is on the 25th in Dhaka.
    late = message(sub, at=datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    assert late.pk in get(**{"from": "2026-11-25", "to": "2026-11-25"})
    assert late.pk not in get(to="2026-11-24")
    assert get(status="bogus", channel="fax") == {old.pk, receipt.pk, email.pk, karim_sms.pk, late.pk}


def test_list_pages_by_keyset_newest_first(world, client_for):
    made = [message(world["sub"]).pk for _ in range(PAGE_SIZE + 3)]
    client = client_for("support")
    first = client.get("/office/messages/")
    assert [m.pk for m in first.context["page"].rows] == sorted(made, reverse=True)[:PAGE_SIZE]
    second = client.get("/office/messages/", {"after": first.context["page"].next_after})
    assert [m.pk for m in second.context["page"].rows] == sorted(made, reverse=True)[PAGE_SIZE:]
    back = client.get("/office/messages/", {"before": second.context["page"].prev_before})
    assert [m.pk for m in back.context["page"].rows] == [m.pk for m in first.context["page"].rows]


def test_message_page_shows_the_text_escaped_with_its_cost(world, client_for):
    sub = world["sub"]
    Subscriber.objects.filter(pk=sub.pk).update(name=XSS)
    msg = message(sub, body=f"Hello {XSS} আপনার বিল")
    client = client_for("viewer")
    response = client.get(f"/office/messages/{msg.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert XSS not in html
    assert "&lt;script&gt;alert(&quot;sms&quot;)&lt;/script&gt;" in html
    assert "UCS-2" in html and response.context["cost"] == sms_cost(msg.body)
    listing = client.get("/office/messages/").content.decode()
    assert XSS not in listing and "&lt;script&gt;" in listing
    assert client.get("/office/messages/999999/").status_code == 404


@pytest.mark.parametrize("role", [*ROLES, NO_ROLE, "anonymous"])
def test_message_page_by_role(world, client_for, role):
    msg = message(world["sub"])
    response = (Client() if role == "anonymous" else client_for(role)).get(f"/office/messages/{msg.pk}/")
    if role == "anonymous":
        assert response.status_code == 302 and "/office/login/" in response["Location"]
    elif role in ROLES:  # every role may read messages
        assert response.status_code == 200
    else:
        assert response.status_code == 403


def test_nav_links_follow_the_role(world, client_for):
    viewer = client_for("viewer").get("/office/").content.decode()
    assert 'href="/office/messages/"' in viewer and 'href="/office/payments/"' in viewer
    billing = client_for("billing").get("/office/payments/").content.decode()
    assert 'href="/office/webhooks/"' in billing
    assert 'href="/office/webhooks/"' not in client_for("support").get("/office/payments/").content.decode()


def test_sms_cost_is_segments_times_the_providers_price(world, client_for, settings):
    """Cost = billed segments × ISPBILL_SMS_SEGMENT_PRICE, exact to the paisa."""
    settings.ISPBILL_SMS_SEGMENT_PRICE = "0.275"
    Message.objects.all().delete()
    three = message(world["sub"], segments=3)
    message(world["sub"], segments=2)
    message(world["sub"], channel="email", body="Receipt")  # email: no segments, no SMS cost

    client = client_for("viewer")
    page = client.get("/office/messages/").content.decode()
    assert '<dd id="sms-cost">৳ 1.38 ' in page  # 5 × 0.275 = 1.375 → 1.38 (half up)
    detail = client.get(f"/office/messages/{three.pk}/").content.decode()
    assert "৳ 0.83" in detail  # 3 × 0.275 = 0.825 → 0.83
