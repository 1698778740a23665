"""Helpers for the REST API tests: a JSON client, row counts, error assertions."""

from __future__ import annotations

import json

from django.test import Client

from ispbill.billing.models import (
    BillingSettings,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    NumberSequence,
    PackageChange,
)
from ispbill.payments.models import Payment
from ispbill.plans.models import Package
from ispbill.subscribers.models import Subscriber

BASE = "/api/v1"
_MISSING = object()


class JsonClient:
    """Talks JSON to ``/api/v1`` with (or without) a bearer token."""

    def __init__(self, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = Client(headers=headers)

    def get(self, path: str, **params):
        return self._client.get(BASE + path, params)

    def post(self, path: str, body=_MISSING, *, raw: str | None = None, headers: dict | None = None):
        return self._send("post", path, body, raw, headers)

    def patch(self, path: str, body=_MISSING, *, raw: str | None = None, headers: dict | None = None):
        return self._send("patch", path, body, raw, headers)

    def _send(self, method, path, body, raw, headers):
        data = raw if raw is not None else ("" if body is _MISSING else json.dumps(body))
        return getattr(self._client, method)(BASE + path, data=data, content_type="application/json", headers=headers or {})


def row_counts() -> dict[str, int]:
    models = (
        Package, Subscriber, Invoice, InvoiceLine, CreditNote, CreditNoteLine, LedgerEntry, PackageChange,
        NumberSequence, Payment,
    )
    return {m.__name__: m.objects.count() for m in models}


def settings_snapshot() -> dict:
    s = BillingSettings.load()
    return {f.name: getattr(s, f.name) for f in BillingSettings._meta.fields if f.name != "updated_at"}


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """A clear 4xx JSON error: ``{code, message}`` (and ``field`` where one is to blame)."""
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    if field is not None:
        fields = {body.get("field")} | {e.get("field") for e in body.get("errors", [])}
        assert field in fields, body
    return body
