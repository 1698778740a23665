"""Built-in message texts (English and Bangla) and the renderer.

Templates use ``{placeholder}`` names only (no attribute or index access), so a template
edited by staff can never reach into Python objects. Unknown placeholders are left as
written, so a typo shows in the preview instead of failing a send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.html import escape, urlize

PLACEHOLDERS = (
    "name", "amount_due", "due_date", "suspension_date", "payment_link", "isp_name", "hotline",
    "invoice_number", "amount_paid", "balance",
)
_FIELD = re.compile(r"\{([a-z_]+)\}")
# Anything in braces that looks meant as a placeholder ({Name}, {amount-due},
# {name.__class__}); checked against PLACEHOLDERS when staff save a template.
_BRACED = re.compile(r"\{([^{}\s]+)\}")


@dataclass(frozen=True)
class Text:
    subject: str
    body: str


SMS = "sms"
EMAIL = "email"

DEFAULTS: dict[tuple[str, str, str], Text] = {
    # -- English --------------------------------------------------------------------------
    ("reminder", "en", SMS): Text("", "Dear {name}, your internet bill of Tk {amount_due} is due on {due_date}. Pay now: {payment_link} - {isp_name}"),
    ("reminder", "en", EMAIL): Text(
        "Your internet bill of Tk {amount_due} is due on {due_date}",
        "Dear {name},\n\nYour internet bill {invoice_number} of Tk {amount_due} is due on {due_date}.\n\n"
        "Pay from your phone with bKash, Nagad or card: {payment_link}\n\nThank you,\n{isp_name}\nHotline: {hotline}",
    ),
    ("due_today", "en", SMS): Text("", "Dear {name}, today ({due_date}) is the last day to pay Tk {amount_due} and avoid disconnection. Pay: {payment_link} - {isp_name}"),
    ("due_today", "en", EMAIL): Text(
        "Last day to pay: Tk {amount_due} due today",
        "Dear {name},\n\nToday, {due_date}, is the last day to pay your internet bill {invoice_number} of Tk {amount_due} "
        "and avoid disconnection.\n\nPay now: {payment_link}\n\n{isp_name}\nHotline: {hotline}",
    ),
    ("overdue", "en", SMS): Text("", "Dear {name}, Tk {amount_due} is overdue. Your connection will be suspended on {suspension_date} unless paid: {payment_link} - {isp_name}"),
    ("overdue", "en", EMAIL): Text(
        "Overdue: your connection will be suspended on {suspension_date}",
        "Dear {name},\n\nYour internet bill {invoice_number} of Tk {amount_due} was due on {due_date} and is still unpaid. "
        "Your connection will be suspended on {suspension_date} unless it is paid.\n\nPay now: {payment_link}\n\n{isp_name}\nHotline: {hotline}",
    ),
    ("suspended", "en", SMS): Text("", "Dear {name}, your internet connection is suspended for an unpaid bill of Tk {amount_due}. Pay to reconnect at once: {payment_link} - {isp_name}"),
    ("suspended", "en", EMAIL): Text(
        "Your internet connection is suspended",
        "Dear {name},\n\nYour internet connection has been suspended because Tk {amount_due} is unpaid. "
        "Pay now and it is restored within seconds: {payment_link}\n\n{isp_name}\nHotline: {hotline}",
    ),
    ("reconnected", "en", SMS): Text("", "Dear {name}, thank you. Your internet connection is active again. - {isp_name}"),
    ("reconnected", "en", EMAIL): Text(
        "Your internet connection is active again",
        "Dear {name},\n\nThank you for your payment. Your internet connection is active again.\n\n{isp_name}\nHotline: {hotline}",
    ),
    ("receipt", "en", SMS): Text("", "Dear {name}, we received Tk {amount_paid}. Balance due: Tk {balance}. Thank you. - {isp_name}"),
    ("receipt", "en", EMAIL): Text(
        "Payment received: Tk {amount_paid}",
        "Dear {name},\n\nWe received your payment of Tk {amount_paid}. Balance due: Tk {balance}.\n\nThank you,\n{isp_name}\nHotline: {hotline}",
    ),
    # -- Bangla ---------------------------------------------------------------------------
    ("reminder", "bn", SMS): Text("", "প্রিয় {name}, আপনার ইন্টারনেট বিল {amount_due} টাকা, পরিশোধের শেষ তারিখ {due_date}। এখনই পরিশোধ করুন: {payment_link} - {isp_name}"),
    ("reminder", "bn", EMAIL): Text(
        "আপনার ইন্টারনেট বিল {amount_due} টাকা, শেষ তারিখ {due_date}",
        "প্রিয় {name},\n\nআপনার ইন্টারনেট বিল {invoice_number}: {amount_due} টাকা, পরিশোধের শেষ তারিখ {due_date}।\n\n"
        "বিকাশ, নগদ বা কার্ডে ফোন থেকেই পরিশোধ করুন: {payment_link}\n\nধন্যবাদ,\n{isp_name}\nহটলাইন: {hotline}",
    ),
    ("due_today", "bn", SMS): Text("", "প্রিয় {name}, আজ ({due_date}) {amount_due} টাকা পরিশোধের শেষ দিন, সংযোগ বিচ্ছিন্ন এড়াতে পরিশোধ করুন: {payment_link} - {isp_name}"),
    ("due_today", "bn", EMAIL): Text(
        "আজ বিল পরিশোধের শেষ দিন: {amount_due} টাকা",
        "প্রিয় {name},\n\nআজ {due_date} আপনার ইন্টারনেট বিল {invoice_number} ({amount_due} টাকা) পরিশোধের শেষ দিন। "
        "সংযোগ বিচ্ছিন্ন এড়াতে এখনই পরিশোধ করুন: {payment_link}\n\n{isp_name}\nহটলাইন: {hotline}",
    ),
    ("overdue", "bn", SMS): Text("", "প্রিয় {name}, {amount_due} টাকা বকেয়া। পরিশোধ না করলে {suspension_date} তারিখে সংযোগ স্থগিত হবে: {payment_link} - {isp_name}"),
    ("overdue", "bn", EMAIL): Text(
        "বকেয়া বিল: {suspension_date} তারিখে সংযোগ স্থগিত হবে",
        "প্রিয় {name},\n\nআপনার ইন্টারনেট বিল {invoice_number} ({amount_due} টাকা) {due_date} তারিখে পরিশোধযোগ্য ছিল। "
        "পরিশোধ না করলে {suspension_date} তারিখে সংযোগ স্থগিত হবে।\n\nএখনই পরিশোধ করুন: {payment_link}\n\n{isp_name}\nহটলাইন: {hotline}",
    ),
    ("suspended", "bn", SMS): Text("", "প্রিয় {name}, {amount_due} টাকা বকেয়ার জন্য আপনার সংযোগ স্থগিত। পরিশোধ করলেই সাথে সাথে চালু হবে: {payment_link} - {isp_name}"),
    ("suspended", "bn", EMAIL): Text(
        "আপনার ইন্টারনেট সংযোগ স্থগিত",
        "প্রিয় {name},\n\n{amount_due} টাকা বকেয়া থাকায় আপনার ইন্টারনেট সংযোগ স্থগিত করা হয়েছে। "
        "পরিশোধ করলে কয়েক সেকেন্ডের মধ্যে সংযোগ চালু হবে: {payment_link}\n\n{isp_name}\nহটলাইন: {hotline}",
    ),
    ("reconnected", "bn", SMS): Text("", "প্রিয় {name}, ধন্যবাদ। আপনার ইন্টারনেট সংযোগ আবার চালু হয়েছে। - {isp_name}"),
    ("reconnected", "bn", EMAIL): Text(
        "আপনার ইন্টারনেট সংযোগ আবার চালু হয়েছে",
        "প্রিয় {name},\n\nপরিশোধের জন্য ধন্যবাদ। আপনার ইন্টারনেট সংযোগ আবার চালু হয়েছে।\n\n{isp_name}\nহটলাইন: {hotline}",
    ),
    ("receipt", "bn", SMS): Text("", "প্রিয় {name}, {amount_paid} টাকা পেয়েছি। বকেয়া: {balance} টাকা। ধন্যবাদ। - {isp_name}"),
    ("receipt", "bn", EMAIL): Text(
        "পরিশোধ পেয়েছি: {amount_paid} টাকা",
        "প্রিয় {name},\n\nআপনার {amount_paid} টাকা পরিশোধ পেয়েছি। বকেয়া: {balance} টাকা।\n\nধন্যবাদ,\n{isp_name}\nহটলাইন: {hotline}",
    ),
}


def render(template: str, context: dict[str, str]) -> str:
    return _FIELD.sub(lambda m: str(context[m.group(1)]) if m.group(1) in context else m.group(0), template)


def unknown_placeholders(template: str) -> list[str]:
    return sorted({m.group(1) for m in _BRACED.finditer(template)} - set(PLACEHOLDERS))


def to_html(body: str) -> str:
    """The plain text as simple HTML: escaped, paragraphs kept, links clickable."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p for p in body.split("\n\n") if p.strip()]
    parts = [f"<p>{urlize(escape(p)).replace(chr(10), '<br>')}</p>" for p in paragraphs]
    return '<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">' + "".join(parts) + "</body></html>"
