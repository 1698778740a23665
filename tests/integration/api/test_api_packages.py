"""/api/v1/packages"""

from __future__ import annotations

import pytest

from ispbill.plans.models import Package

from .api_support import assert_error, row_counts

pytestmark = pytest.mark.django_db


def make(api, **body):
    response = api.post("/packages", {"name": "Home 10M", "price": "1000.00"} | body)
    assert response.status_code == 201, response.content
    return response.json()


def test_create_get_list_and_update_a_package(api):
    assert api.get("/packages").json() == {"items": [], "count": 0}

    response = api.post(
        "/packages", {"name": "Home 10M", "price": "1000", "rate_limit": "10M/10M", "router_profile": "home-10m"}
    )

    assert response.status_code == 201
    created = response.json()
    pid = created["id"]
    assert created == {
        "id": pid, "name": "Home 10M", "price": "1000.00", "rate_limit": "10M/10M", "router_profile": "home-10m",
        "is_active": True,
    }
    assert api.get(f"/packages/{pid}").json() == created
    cheap = make(api, name="Lite 5M", price="516.13")
    assert cheap["price"] == "516.13"
    free = make(api, name="Staff", price="0")
    assert free["price"] == "0.00"

    listing = api.get("/packages").json()
    assert listing["count"] == 3
    assert [p["name"] for p in listing["items"]] == ["Staff", "Lite 5M", "Home 10M"]  # by price
    assert api.get("/packages", limit=1, offset=1).json() == {"items": [cheap], "count": 3}

    response = api.patch(f"/packages/{pid}", {"price": "1200.50", "is_active": False})
    assert response.status_code == 200
    assert response.json() == created | {"price": "1200.50", "is_active": False}
    assert Package.objects.get(pk=pid).price_paisa == 120050
    assert [p["name"] for p in api.get("/packages", active="false").json()["items"]] == ["Home 10M"]
    assert [p["name"] for p in api.get("/packages", active="true").json()["items"]] == ["Staff", "Lite 5M"]


def test_patch_with_nothing_or_nulls_changes_nothing(api):
    created = make(api)
    assert api.patch(f"/packages/{created['id']}", {}).json() == created
    response = api.patch(f"/packages/{created['id']}", {"name": None, "price": None, "is_active": None})
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"price": "-1.00"}, 422, "invalid_input", "price"),
        ({"price": "abc"}, 422, "invalid_input", "price"),
        ({"price": 1000.5}, 422, "invalid_input", "price"),  # a JSON float
        ({"price": "10.125"}, 422, "invalid_input", "price"),
        ({"price": "1e3"}, 422, "invalid_input", "price"),
        ({"price": "NaN"}, 422, "invalid_input", "price"),
        ({"price": "Infinity"}, 422, "invalid_input", "price"),
        ({"price": ""}, 422, "invalid_input", "price"),
        ({"price": None}, 422, "invalid_input", "price"),
        ({"price": True}, 422, "invalid_input", "price"),
        ({"price": "99999999999999"}, 422, "invalid_input", "price"),
        ({"name": "   "}, 422, "name_required", "name"),
        ({"name": "x" * 101}, 422, "invalid_input", "name"),
        ({"name": None}, 422, "invalid_input", "name"),
        ({"rate_limit": "x" * 51}, 422, "invalid_input", "rate_limit"),
        ({"name": "Home 10M"}, 409, "duplicate_package", None),
    ],
)
def test_bad_package_input_is_refused_and_writes_nothing(api, body, status, code, field):
    make(api)
    before = row_counts()

    assert_error(api.post("/packages", {"name": "New", "price": "500.00"} | body), status, code, field)

    assert row_counts() == before


def test_missing_fields_are_named(api):
    body = assert_error(api.post("/packages", {}), 422, "invalid_input")
    assert {e["field"] for e in body["errors"]} == {"name", "price"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"price": "-5"}, 422, "invalid_input"),
        ({"price": 12.5}, 422, "invalid_input"),
        ({"price": "1.001"}, 422, "invalid_input"),
        ({"name": ""}, 422, "name_required"),
        ({"name": "Other"}, 409, "duplicate_package"),
    ],
)
def test_bad_patch_is_refused_and_changes_nothing(api, body, status, code):
    created = make(api)
    make(api, name="Other", price="700.00")

    assert_error(api.patch(f"/packages/{created['id']}", body), status, code)

    assert api.get(f"/packages/{created['id']}").json() == created


def test_unknown_package_is_a_404(api):
    assert_error(api.get("/packages/999999"), 404, "not_found")
    assert_error(api.patch("/packages/999999", {"price": "1.00"}), 404, "not_found")
    assert_error(api.get("/packages/not-a-number"), 422, "invalid_input")
