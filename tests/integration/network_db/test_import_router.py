"""``ispbill import-router``: subscribers from a router's PPP secrets."""

from __future__ import annotations

import pytest

from ispbill import cli
from ispbill.core.errors import DomainError
from ispbill.network import importer
from ispbill.subscribers.models import Subscriber

from .conftest import HOME, PRO, SUSPENDED, add_subscriber, free_port, make_router

pytestmark = pytest.mark.django_db


@pytest.fixture
def secrets(sim, router, packages):
    """What an ISP's router typically holds before billing knows anybody."""
    sim.add_profile("old-5M")
    sim.add_secret("rahim", profile=HOME, comment="Rahim Uddin 01712-345678")
    sim.add_secret("karim", profile=PRO, comment="Karim Mia, +8801812345678")
    sim.add_secret("1001", profile=HOME, comment="")  # numeric user name, no comment
    sim.add_secret("legacy", profile="old-5M", comment="Legacy Lutfa 01912345678")
    sim.add_secret("sumon", profile=SUSPENDED, comment="Sumon 01612345678")
    sim.add_secret("gone", profile=HOME, comment="Left 01512345678", disabled=True)
    sim.add_secret("known", profile=HOME, comment="Already billed 01312345678")
    add_subscriber(packages["home"], "known", router=router, n=9)
    return sim


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["import-router", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_plan_and_writes_nothing(secrets, router, capsys, fixed_clock):
    before = Subscriber.objects.count()

    code, out, _ = run(capsys, "core-1", "--phone-from-comment", "--dry-run")

    assert code == 0, out
    assert Subscriber.objects.count() == before
    assert "7 PPP secrets, 1 already in billing" in out
    assert "Would create 2 subscribers:" in out
    assert "  rahim: Rahim Uddin | +8801712345678 | Home 10M (profile home-10M)" in out
    assert "  karim: Karim Mia | +8801812345678 | Pro 20M (profile pro-20M)" in out
    assert "  1001: no phone number in the comment (use --phone-from-comment or --placeholder-phone)" in out
    assert "  legacy: profile 'old-5M' matches no package (use --map 'old-5M=PACKAGE' or --default-package)" in out
    assert "  sumon: on the suspended profile 'Suspended_Profile', so its package is unknown" in out
    assert "  gone: the secret is disabled on the router" in out
    assert "Dry run: nothing written. 2 would be created, 4 skipped." in out


def test_import_creates_subscribers_on_the_router(secrets, router, packages, capsys, fixed_clock):
    code, out, _ = run(capsys, "core-1", "--phone-from-comment")

    assert code == 0, out
    assert "Created 2 subscribers on core-1; skipped 4; 1 already in billing." in out
    rahim = Subscriber.objects.get(pppoe_username="rahim")
    assert (rahim.name, rahim.phone, rahim.package, rahim.router, rahim.status) == (
        "Rahim Uddin", "+8801712345678", packages["home"], router, "active"
    )
    assert str(rahim.activated_on) == "2026-11-25"  # billed from the day of the import
    assert Subscriber.objects.get(pppoe_username="karim").package == packages["pro"]
    assert not Subscriber.objects.filter(pppoe_username__in=["1001", "legacy", "sumon", "gone"]).exists()

    # A second run finds them known and creates nothing.
    code, out, _ = run(capsys, "core-1", "--phone-from-comment")
    assert code == 0 and "3 already in billing" in out and "Created 0 subscribers" in out


def test_maps_defaults_and_placeholder_phones(secrets, router, packages, capsys, fixed_clock):
    code, out, _ = run(
        capsys, str(router.pk), "--phone-from-comment", "--map", "old-5M=Home 10M", "--map", f"{SUSPENDED}=Pro 20M",
        "--placeholder-phone", "01700000000",
    )

    assert code == 0, out
    assert "Created 5 subscribers" in out and "  1001: 1001 | +8801700000000 | Home 10M (profile home-10M) [placeholder phone]" in out
    legacy = Subscriber.objects.get(pppoe_username="legacy")
    assert (legacy.name, legacy.package, legacy.phone) == ("Legacy Lutfa", packages["home"], "+8801912345678")
    # On the suspended profile on the router: imported suspended, so reconciliation keeps it so.
    sumon = Subscriber.objects.get(pppoe_username="sumon")
    assert (sumon.status, sumon.package) == ("suspended", packages["pro"])
    assert Subscriber.objects.get(pppoe_username="1001").name == "1001"  # no comment: the user name


def test_default_package_without_phone_from_comment(secrets, router, packages, capsys, fixed_clock):
    code, out, _ = run(capsys, "core-1", "--default-package", "pro 20m", "--placeholder-phone", "+880 1700-000000")

    assert code == 0, out
    legacy = Subscriber.objects.get(pppoe_username="legacy")
    # Without --phone-from-comment the whole comment is the name and the phone is the placeholder.
    assert (legacy.name, legacy.phone, legacy.package) == ("Legacy Lutfa 01912345678", "+8801700000000", packages["pro"])


def test_all_or_nothing(secrets, router, capsys, fixed_clock, monkeypatch):
    real = importer.create_subscriber
    calls = []

    def fails_on_the_second(**kwargs):
        calls.append(kwargs["pppoe_username"])
        if len(calls) == 2:
            raise DomainError("the database said no", code="boom", status=422)
        return real(**kwargs)

    monkeypatch.setattr(importer, "create_subscriber", fails_on_the_second)
    before = Subscriber.objects.count()

    code, _, err = run(capsys, "core-1", "--phone-from-comment")

    assert code == 1 and "rolled back, nothing created" in err
    assert len(calls) == 2 and Subscriber.objects.count() == before


def test_bad_options_and_an_unreachable_router(sim, router, packages, capsys, fixed_clock):
    assert run(capsys, "nope")[0] == 2
    code, _, err = run(capsys, "core-1", "--map", "old-5M")
    assert code == 2 and "expected PROFILE=PACKAGE_NAME" in err
    code, _, err = run(capsys, "core-1", "--map", "old-5M=Platinum")
    assert code == 2 and "no package named 'Platinum'" in err
    code, _, err = run(capsys, "core-1", "--default-package", "Platinum")
    assert code == 2
    code, _, err = run(capsys, "core-1", "--placeholder-phone", "12345")
    assert code == 2 and "--placeholder-phone" in err

    make_router(sim, name="down", port=free_port())
    code, _, err = run(capsys, "down", "--dry-run")
    assert code == 1 and "cannot read PPP secrets from down" in err


def test_ambiguous_profiles_are_not_guessed(secrets, router, packages, capsys, fixed_clock):
    from ispbill.plans.services import create_package
    from decimal import Decimal

    create_package(name="Home 10M Promo", price=Decimal("800"), router_profile=HOME)

    code, out, _ = run(capsys, "core-1", "--phone-from-comment", "--dry-run")

    assert code == 0
    assert "  rahim: profile 'home-10M' belongs to several packages (Home 10M, Home 10M Promo); choose with --map" in out


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("Rahim Uddin 01712345678", ("+8801712345678", "Rahim Uddin")),
        ("01712345678 - Rahim", ("+8801712345678", "Rahim")),
        ("Rahim (+880 1712-345678) Mirpur", ("+8801712345678", "Rahim Mirpur")),
        ("Rahim 008801712345678", ("+8801712345678", "Rahim")),
        ("Rahim 0171234567", None),  # one digit short
        ("Rahim 017123456789", None),  # one digit too many
        ("Flat 12, road 01112345678", None),  # 011 is no mobile operator
        ("", None),
    ],
)
def test_phone_in_comment(comment, expected):
    assert importer.phone_in(comment) == expected
