"""Request and response shapes. Money travels as decimal strings with two places."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Schema
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from ispbill.core.money import MoneyError, parse_amount


def _amount(allow_zero: bool):
    def check(value):
        try:
            return parse_amount(value, allow_zero=allow_zero)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None

    return check


_AMOUNT_SCHEMA = {"type": "string", "pattern": r"^\d{1,13}(\.\d{1,2})?$", "examples": ["516.13"]}
Amount = Annotated[Decimal, BeforeValidator(_amount(False)), WithJsonSchema(_AMOUNT_SCHEMA)]
Price = Annotated[Decimal, BeforeValidator(_amount(True)), WithJsonSchema(_AMOUNT_SCHEMA)]
MoneyOut = Annotated[str, WithJsonSchema({"type": "string", "examples": ["516.13"]})]


class InputSchema(Schema):
    """Request bodies refuse fields they do not know (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")


class ErrorOut(Schema):
    code: str
    message: str
    field: str | None = None


class PackageIn(InputSchema):
    name: str = Field(max_length=100)
    price: Price
    rate_limit: str = Field("", max_length=50)
    router_profile: str = Field("", max_length=100)
    is_active: bool = True


class PackagePatch(InputSchema):
    name: str | None = Field(None, max_length=100)
    price: Price | None = None
    rate_limit: str | None = Field(None, max_length=50)
    router_profile: str | None = Field(None, max_length=100)
    is_active: bool | None = None


class PackageOut(Schema):
    id: int
    name: str
    price: MoneyOut
    rate_limit: str
    router_profile: str
    is_active: bool


Status = Literal["active", "suspended", "disabled"]
Mode = Literal["calendar", "anniversary", ""]


class SubscriberIn(InputSchema):
    name: str = Field(max_length=200)
    phone: str = Field(max_length=32)
    email: str = Field("", max_length=254)
    address: str = Field("", max_length=300)
    area: str = Field("", max_length=100)
    pppoe_username: str = Field(max_length=64)
    package: int
    status: Status = "active"
    activated_on: date | None = None
    billing_mode: Mode = ""
    grace_days_override: int | None = Field(None, ge=0, le=60)
    never_suspend: bool = False
    language: Literal["bn", "en", ""] = ""
    notes: str = ""
    router: int | None = None


class SubscriberPatch(InputSchema):
    name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=254)
    address: str | None = Field(None, max_length=300)
    area: str | None = Field(None, max_length=100)
    pppoe_username: str | None = Field(None, max_length=64)
    status: Status | None = None
    billing_mode: Mode | None = None
    grace_days_override: int | None = Field(None, ge=0, le=60)
    never_suspend: bool | None = None
    language: Literal["bn", "en", ""] | None = None
    notes: str | None = None
    router: int | None = None


class SubscriberOut(Schema):
    id: int
    name: str
    phone: str
    email: str
    address: str
    area: str
    pppoe_username: str
    package: int
    status: str
    activated_on: date
    billing_mode: str
    grace_days_override: int | None
    never_suspend: bool
    language: str
    notes: str
    billed_through: date | None
    balance: MoneyOut
    router: int | None = None


class ChangePackageIn(InputSchema):
    package: int
    effective_on: date
    preview: bool = False


class LineOut(Schema):
    kind: str
    description: str
    amount: MoneyOut


class ChangePackageOut(Schema):
    document: Literal["invoice", "credit_note", "none", "scheduled"]
    preview: bool
    total: MoneyOut
    lines: list[LineOut]
    invoice: int | None = None
    credit_note: int | None = None


class InvoiceOut(Schema):
    id: int
    number: str
    subscriber: int
    kind: str
    period_start: date
    period_end: date
    issued_on: date
    due_on: date
    currency: str
    total: MoneyOut
    amount_due: MoneyOut
    status: str
    lines: list[LineOut]


class VoidIn(InputSchema):
    reason: str = Field(min_length=1, max_length=300)


class CreditNoteIn(InputSchema):
    subscriber: int
    amount: Amount
    reason: str = Field(min_length=1, max_length=300)
    invoice: int | None = None


class CreditNoteOut(Schema):
    id: int
    number: str
    subscriber: int
    invoice: int | None
    issued_on: date
    total: MoneyOut
    reason: str
    lines: list[LineOut]


class PaymentIn(InputSchema):
    subscriber: int
    amount: Amount
    method: Literal["cash", "bank", "manual_mfs"] = "cash"
    reference: str = Field("", max_length=100)
    notes: str = ""
    received_at: datetime | None = None


class AllocationOut(Schema):
    invoice: int | None
    amount: MoneyOut


class PaymentOut(Schema):
    id: int
    subscriber: int | None = Field(description="null for a gateway payment not matched to a subscriber yet")
    amount: MoneyOut
    currency: str
    method: str
    status: Literal["completed", "needs_review", "rejected", "refunded", "partially_refunded"]
    reference: str
    received_at: datetime
    allocations: list[AllocationOut]
    gateway: str = Field(description="bkash, nagad, sslcommerz; empty for cash and manual payments")
    transaction_id: str | None
    method_label: str = Field(description='how the customer paid, e.g. "bKash", "Rocket", "Visa"')
    review_reason: str = Field(description="why the payment waits for staff (status needs_review)")
    refunded: MoneyOut


class PaymentMatchIn(InputSchema):
    subscriber: int
    note: str = Field("", max_length=200)


class PaymentRejectIn(InputSchema):
    reason: str = Field(min_length=1, max_length=200)


class PaymentRefundIn(InputSchema):
    amount: Amount
    reason: str = Field(min_length=1, max_length=200)


class RefundOut(Schema):
    id: int
    payment: int
    amount: MoneyOut
    reason: str
    status: Literal["completed", "pending", "failed"] = Field(
        description="pending: accepted by the gateway, which completes it later; failed: cancelled by the gateway "
                    "(the money did not go back; the payment is as it was before the refund)",
    )
    gateway_refund_id: str
    created_at: datetime
    completed_at: datetime | None
    checks: int = Field(description="how often the gateway was asked about it")
    last_checked_at: datetime | None
    next_check_at: datetime | None = Field(description="null on a pending refund: the worker stopped asking (see last_error)")
    last_error: str


class PaymentRefundOut(Schema):
    refund: RefundOut
    payment: PaymentOut


class RefundCheckOut(Schema):
    outcome: Literal["completed", "failed", "still pending", "given up", "already settled"] = Field(
        description="what the gateway said: completed; failed (cancelled: the payment got back what the refund took); "
                    "still pending (asked again later); given up (pending for 14 days: no more automatic checks, "
                    "see last_error); already settled (a concurrent check settled it first)",
    )
    refund: RefundOut
    payment: PaymentOut


class WebhookOut(Schema):
    id: int
    gateway: str
    kind: Literal["callback", "ipn", "sns"]
    method: str
    path: str
    headers: dict[str, str]
    body: str
    source_ip: str | None
    received_at: datetime
    outcome: Literal["received", "accepted", "duplicate", "rejected", "error"]
    outcome_detail: str
    processed_at: datetime | None
    replays: int
    attempt: str | None = Field(description="our payment attempt reference")
    payment: int | None


class SettingsOut(Schema):
    billing_mode: str
    billing_day: int
    payment_terms: str
    invoice_lead_days: int
    due_rule: str
    due_days: int
    grace_days: int
    rounding: str
    invoice_number_format: str
    credit_note_number_format: str
    tax_name: str
    tax_rate: str
    isp_name: str
    hotline: str


class SettingsPatch(InputSchema):
    billing_mode: Literal["calendar", "anniversary"] | None = None
    billing_day: int | None = Field(None, ge=1, le=31)
    payment_terms: Literal["prepaid", "postpaid"] | None = None
    invoice_lead_days: int | None = Field(None, ge=0, le=60)
    due_rule: Literal["period_start", "after_issue"] | None = None
    due_days: int | None = Field(None, ge=0, le=90)
    grace_days: int | None = Field(None, ge=0, le=60)
    rounding: Literal["paisa", "taka"] | None = None
    invoice_number_format: str | None = Field(None, max_length=64)
    credit_note_number_format: str | None = Field(None, max_length=64)
    tax_name: str | None = Field(None, max_length=32)
    tax_rate: Price | None = None
    isp_name: str | None = Field(None, max_length=120)
    hotline: str | None = Field(None, max_length=32)


class MessageOut(Schema):
    id: int
    subscriber: int
    invoice: int | None
    payment: int | None
    kind: str
    step: str
    channel: str
    trigger: str
    status: str
    recipient: str
    language: str
    subject: str
    body: str
    encoding: str
    segments: int | None
    error: str
    created_at: datetime
    sent_at: datetime | None


class RemindIn(InputSchema):
    kind: Literal["reminder", "due_today", "overdue", "suspended"] = "reminder"
    channels: list[Literal["sms", "email"]] | None = None


class LadderStepIO(InputSchema):
    offset: int = Field(ge=-60, le=60)
    kind: Literal["reminder", "due_today", "overdue"]
    channels: list[Literal["sms", "email"]] = Field(min_length=1)


class DunningSettingsOut(Schema):
    ladder: list[LadderStepIO]
    quiet_hours_start: str
    quiet_hours_end: str
    payment_link_days: int


class DunningSettingsPatch(InputSchema):
    ladder: list[LadderStepIO] | None = None
    quiet_hours_start: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_hours_end: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    payment_link_days: int | None = Field(None, ge=1, le=365)


class TemplateOut(Schema):
    kind: str
    language: str
    channel: str
    subject: str
    body: str
    customised: bool


class TemplateIn(InputSchema):
    subject: str = Field("", max_length=200)
    body: str = Field(min_length=1, max_length=2000)


class RouterIn(InputSchema):
    name: str = Field(max_length=100)
    host: str = Field(max_length=255)
    port: int = 8728
    use_tls: bool = False
    tls_verify: bool = True
    username: str = Field("", max_length=100)
    password: str = Field("", max_length=200, description="write-only: never returned")
    method: Literal["routeros", "radius"] = "routeros"
    suspended_profile: str = Field("Suspended_Profile", max_length=100)
    suspended_address_list: str = Field("suspended", max_length=100)
    radius_secret: str = Field("", max_length=200, description="write-only: never returned")
    coa_port: int = 3799
    is_active: bool = True


class RouterPatch(InputSchema):
    name: str | None = Field(None, max_length=100)
    host: str | None = Field(None, max_length=255)
    port: int | None = None
    use_tls: bool | None = None
    tls_verify: bool | None = None
    username: str | None = Field(None, max_length=100)
    password: str | None = Field(None, max_length=200, description="write-only; null or absent keeps it, \"\" clears it")
    method: Literal["routeros", "radius"] | None = None
    suspended_profile: str | None = Field(None, max_length=100)
    suspended_address_list: str | None = Field(None, max_length=100)
    radius_secret: str | None = Field(None, max_length=200, description="write-only, as password")
    coa_port: int | None = None
    is_active: bool | None = None


class RouterOut(Schema):
    id: int
    name: str
    host: str
    port: int
    use_tls: bool
    tls_verify: bool
    username: str
    password_set: bool
    method: str
    suspended_profile: str
    suspended_address_list: str
    radius_secret_set: bool
    coa_port: int
    is_active: bool
    healthy: bool
    last_ok_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    consecutive_failures: int
    identity: str
    version: str
    subscribers: int


class RouterTestOut(Schema):
    reachable: bool
    identity: str | None
    version: str | None
    error: str | None


class ReconcileCountsOut(Schema):
    online_unpaid: int
    unknown_on_router: int
    paid_but_suspended: int
    missing_on_router: int


class ReconcileOut(Schema):
    id: int
    router: int
    started_at: datetime
    finished_at: datetime | None
    ok: bool
    error: str
    secrets: int
    online: int
    repaired: int
    counts: ReconcileCountsOut
    online_unpaid: list[str]
    unknown_on_router: list[str]
    paid_but_suspended: list[str]
    missing_on_router: list[str]
