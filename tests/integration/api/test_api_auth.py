"""Authentication, the OpenAPI document and malformed requests, across the API."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from ispbill.api.models import ApiToken
from ispbill.api.tokens import issue_token

from .api_support import JsonClient, assert_error, row_counts

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/packages"),
    ("post", "/packages"),
    ("get", "/packages/1"),
    ("patch", "/packages/1"),
    ("get", "/subscribers"),
    ("post", "/subscribers"),
    ("get", "/subscribers/1"),
    ("patch", "/subscribers/1"),
    ("post", "/subscribers/1/change-package"),
    ("get", "/invoices"),
    ("get", "/invoices/1"),
    ("post", "/invoices/1/void"),
    ("get", "/credit-notes"),
    ("post", "/credit-notes"),
    ("get", "/credit-notes/1"),
    ("get", "/payments"),
    ("post", "/payments"),
    ("get", "/payments/1"),
    ("get", "/settings"),
    ("patch", "/settings"),
]


def call(client: JsonClient, method: str, path: str):
    return client.get(path) if method == "get" else getattr(client, method)(path, {})


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_a_token(anon, method, path):
    before = row_counts()
    body = assert_error(call(anon, method, path), 401, "unauthorized")
    assert "Bearer" in body["message"]
    assert row_counts() == before


@pytest.mark.parametrize(
    "authorization", ["Bearer isb_not-a-real-token", "Bearer ", "Token isb_x", "isb_x", "Basic c3RhZmY6cGFzcw=="]
)
def test_wrong_or_malformed_tokens_are_refused(staff, fixed_clock, authorization):
    client = Client(headers={"Authorization": authorization})
    assert_error(client.get("/api/v1/packages"), 401, "unauthorized")


def test_revoked_token_and_inactive_user_are_refused(staff, fixed_clock):
    token = issue_token(username=staff.username)
    client = JsonClient(token)
    assert client.get("/packages").status_code == 200

    ApiToken.objects.update(revoked=True)
    assert_error(client.get("/packages"), 401, "unauthorized")

    ApiToken.objects.update(revoked=False)
    staff.is_active = False
    staff.save()
    assert_error(client.get("/packages"), 401, "unauthorized")


def test_only_the_hash_of_a_token_is_stored(staff):
    token = issue_token(username=staff.username)
    stored = ApiToken.objects.get()
    assert token.startswith("isb_")
    assert stored.key_hash != token and token not in stored.key_hash
    assert stored.prefix == token[:12]


def test_openapi_document_is_valid_json_and_lists_the_paths(anon):
    response = Client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    doc = json.loads(response.content)
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "ispbill API"
    paths = set(doc["paths"])
    assert {
        "/api/v1/packages",
        "/api/v1/packages/{package_id}",
        "/api/v1/subscribers",
        "/api/v1/subscribers/{subscriber_id}",
        "/api/v1/subscribers/{subscriber_id}/change-package",
        "/api/v1/invoices",
        "/api/v1/invoices/{invoice_id}",
        "/api/v1/invoices/{invoice_id}/void",
        "/api/v1/credit-notes",
        "/api/v1/credit-notes/{note_id}",
        "/api/v1/payments",
        "/api/v1/payments/{payment_id}",
        "/api/v1/settings",
    } <= paths
    assert set(doc["paths"]["/api/v1/payments"]) == {"get", "post"}
    # Every operation declares the bearer scheme; money is documented as a string.
    assert doc["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    amount = doc["components"]["schemas"]["PaymentIn"]["properties"]["amount"]
    assert amount["type"] == "string"


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/packages"), ("post", "/subscribers"), ("post", "/payments"), ("post", "/credit-notes"), ("patch", "/settings")],
)
@pytest.mark.parametrize("raw", ['{"name": "x",', "not json", "{'single': 'quotes'}"])
def test_malformed_json_is_a_400_not_a_500(api, method, path, raw):
    before = row_counts()
    assert_error(getattr(api, method)(path, raw=raw), 400, "bad_request")
    assert row_counts() == before


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null"])
def test_json_that_is_not_an_object_is_refused(api, raw):
    before = row_counts()
    response = api.post("/packages", raw=raw)
    assert 400 <= response.status_code < 500, response.content
    assert {"code", "message"} <= set(response.json())
    assert row_counts() == before


def test_unknown_path_is_a_404(api):
    response = api.get("/nothing-here")
    assert response.status_code == 404
