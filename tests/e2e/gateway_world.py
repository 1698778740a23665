"""Set-up for the end-to-end payment tests, run as a script against the database the
server under test uses (``DATABASE_URL`` / ``ISPBILL_DATA_DIR`` in the environment):

    python tests/e2e/gateway_world.py attempts --gateway sslcommerz --count 1

Creates subscribers (each owing 1000.00 on an invoice of the current month, through the
services) and, for each, a payment attempt through
``gateway_services.start_gateway_payment`` (which opens the session at the gateway the
environment configures, pointing back at ``ISPBILL_PUBLIC_URL``). Prints one JSON
object: ``{"attempts": [{subscriber_id, attempt_id, reference, redirect_url}, ...]}``.

    python tests/e2e/gateway_world.py link --subscriber PPPOE_USERNAME

prints ``{"subscriber_id", "token", "url"}``: a payment link for an existing subscriber.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from decimal import Decimal


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispbill.settings")
    import django

    django.setup()


def attempts(gateway: str, count: int) -> list[dict]:
    from ispbill.billing.services import run_billing
    from ispbill.core import clock
    from ispbill.core.timeutil import local_date
    from ispbill.payments.gateway_services import start_gateway_payment
    from ispbill.plans.models import Package
    from ispbill.plans.services import create_package
    from ispbill.subscribers.services import create_subscriber

    now = clock.now()
    first = local_date(now).replace(day=1)
    package = Package.objects.filter(name="E2E 10M").first() or create_package(
        name="E2E 10M", price=Decimal("1000.00"), rate_limit="10M/10M", router_profile="e2e-10m",
    )
    tag = secrets.token_hex(3)
    subs = [
        create_subscriber(
            today=first, name=f"E2E Subscriber {tag}{i}", phone=f"0171{secrets.randbelow(10**7):07d}",
            pppoe_username=f"e2e{tag}{i}", package_id=package.pk, activated_on=first, email=f"e2e{tag}{i}@example.com",
        )
        for i in range(count)
    ]
    run_billing(today=first, now=now)
    out = []
    for sub in subs:
        attempt, url = start_gateway_payment(subscriber_id=sub.pk, gateway=gateway, now=clock.now())
        out.append({"subscriber_id": sub.pk, "attempt_id": attempt.pk, "reference": attempt.reference, "redirect_url": url})
    return out


def link(username: str) -> dict:
    from django.conf import settings

    from ispbill.core import clock
    from ispbill.payments import links
    from ispbill.subscribers.models import Subscriber

    sub = Subscriber.objects.get(pppoe_username=username)
    made = links.current_link(subscriber_id=sub.pk, now=clock.now(), valid_days=30)
    token = links.token_for(made)
    return {"subscriber_id": sub.pk, "token": token, "url": f"{settings.ISPBILL_PUBLIC_URL}/pay/{token}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("attempts")
    p.add_argument("--gateway", default="sslcommerz")
    p.add_argument("--count", type=int, default=1)
    p = sub.add_parser("link")
    p.add_argument("--subscriber", required=True, help="PPPoE user name")
    args = parser.parse_args(argv)
    _setup()
    if args.command == "attempts":
        result = {"attempts": attempts(args.gateway, args.count)}
    else:
        result = link(args.subscriber)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
