"""notifications/texts.py: built-in templates, the renderer and the HTML version."""

from __future__ import annotations

import re

import pytest

from ispbill.notifications import texts
from ispbill.notifications.sms import sms_cost

KINDS = ("reminder", "due_today", "overdue", "suspended", "reconnected", "receipt")
LINK = "https://pay.example.com/pay/WzEyLDM0NV0:1xWFbO:H38QMYC0woZwshF1yJT5sX88BYqkUZOwdrV8qqv13Fs"

CONTEXT = {
    "name": "Rahim Uddin",
    "amount_due": "1050.00",
    "due_date": "10 Dec 2026",
    "suspension_date": "14 Dec 2026",
    "payment_link": LINK,
    "isp_name": "Dhaka Fiber Net",
    "hotline": "+8801711000000",
    "invoice_number": "INV-2026-000123",
    "amount_paid": "500.00",
    "balance": "550.00",
}
BRACES = re.compile(r"[{}]")


def test_context_covers_every_placeholder():
    assert set(CONTEXT) == set(texts.PLACEHOLDERS)


def test_defaults_cover_every_kind_language_and_channel():
    assert set(texts.DEFAULTS) == {(k, lang, ch) for k in KINDS for lang in ("en", "bn") for ch in (texts.SMS, texts.EMAIL)}
    assert len(texts.DEFAULTS) == 24


@pytest.mark.parametrize("key", sorted(texts.DEFAULTS), ids=lambda k: "/".join(k))
def test_every_default_renders_completely(key):
    tpl = texts.DEFAULTS[key]
    assert texts.unknown_placeholders(tpl.body) == []
    assert texts.unknown_placeholders(tpl.subject) == []
    body = texts.render(tpl.body, CONTEXT)
    subject = texts.render(tpl.subject, CONTEXT)
    assert not BRACES.search(body), body
    assert not BRACES.search(subject), subject
    assert "Rahim Uddin" in body
    if key[2] == texts.EMAIL:
        assert subject.strip()
    else:
        assert tpl.subject == ""


@pytest.mark.parametrize("kind", KINDS)
def test_sms_defaults_encoding_by_language(kind):
    assert sms_cost(texts.render(texts.DEFAULTS[(kind, "bn", texts.SMS)].body, CONTEXT)).encoding == "UCS-2"
    # English stays in GSM-7 (a stray curly quote or dash would double the cost)
    assert sms_cost(texts.render(texts.DEFAULTS[(kind, "en", texts.SMS)].body, CONTEXT)).encoding == "GSM-7"


@pytest.mark.parametrize("kind", ["reminder", "due_today", "overdue", "suspended"])
@pytest.mark.parametrize("language", ["en", "bn"])
@pytest.mark.parametrize("channel", [texts.SMS, texts.EMAIL])
def test_dunning_texts_carry_the_amount_and_the_payment_link(kind, language, channel):
    body = texts.render(texts.DEFAULTS[(kind, language, channel)].body, CONTEXT)
    assert "1050.00" in body
    assert LINK in body


def test_render_substitutes_known_names_and_leaves_unknown_ones():
    assert texts.render("Hi {name}, {nope} {amount_due}", {"name": "Karim", "amount_due": "5.00"}) == "Hi Karim, {nope} 5.00"


def test_render_leaves_placeholders_missing_from_the_context():
    assert texts.render("{name} owes {amount_due}", {"name": "Karim"}) == "Karim owes {amount_due}"


@pytest.mark.parametrize(
    "template",
    [
        "{name.__class__}",
        "{name.__class__.__mro__}",
        "{name[0]}",
        "{name!r}",
        "{name:>30}",
        "{0}",
        "{}",
    ],
)
def test_render_never_evaluates_format_syntax(template):
    out = texts.render(template, {"name": "Karim"})
    assert out == template


def test_render_of_doubled_braces_only_fills_the_inner_name():
    # Not str.format: "{{" is no escape, the inner placeholder is simply replaced.
    assert texts.render("{{name}}", {"name": "Karim"}) == "{Karim}"


def test_values_are_not_rendered_again():
    ctx = {"name": "{payment_link} {name.__class__}", "payment_link": LINK}
    assert texts.render("Dear {name}", ctx) == "Dear {payment_link} {name.__class__}"


def test_unknown_placeholders():
    assert texts.unknown_placeholders("Dear {name}, {amount_due}") == []
    assert texts.unknown_placeholders("{foo} {name} {bar} {foo}") == ["bar", "foo"]
    assert texts.unknown_placeholders("no placeholders at all") == []


@pytest.mark.parametrize(
    ("template", "unknown"),
    [
        ("Dear {Name}", ["Name"]),  # wrong case would go out literally
        ("Tk {amount-due}", ["amount-due"]),
        ("{name.__class__}", ["name.__class__"]),
        ("{name[0]}", ["name[0]"]),
        ("{amount_due2}", ["amount_due2"]),
    ],
)
def test_unknown_placeholders_catch_near_misses(template, unknown):
    assert texts.unknown_placeholders(template) == unknown


def test_to_html_escapes_and_links():
    ctx = {**CONTEXT, "name": "<script>alert(1)</script>", "isp_name": "A & B Net"}
    body = texts.render(texts.DEFAULTS[("reminder", "en", texts.EMAIL)].body, ctx)
    html = texts.to_html(body)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A &amp; B Net" in html
    assert f'<a href="{LINK}"' in html
    assert f">{LINK}</a>" in html
    assert html.count("<p>") == body.count("\n\n") + 1
    assert "Hotline: +8801711000000" in html
    assert "<br>" in html  # single line breaks inside a paragraph are kept


def test_to_html_does_not_let_markup_ride_on_a_link():
    html = texts.to_html('see http://a.example/"onmouseover=alert(1) and http://b.example/<img src=x onerror=alert(1)>')
    assert "<img" not in html
    assert '"onmouseover' not in html
    assert "onmouseover=alert(1)" in html  # shown as text / quoted in the href, not as an attribute


def test_to_html_of_bangla_keeps_the_text():
    body = texts.render(texts.DEFAULTS[("reminder", "bn", texts.EMAIL)].body, CONTEXT)
    html = texts.to_html(body)
    assert "প্রিয় Rahim Uddin" in html
    assert f'<a href="{LINK}"' in html
