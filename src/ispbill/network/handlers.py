"""The ``network.enforce`` outbox handler: apply one EnforcementAction on its router."""

from __future__ import annotations

import logging

from django.db.models import F

from ispbill.network import services
from ispbill.network.choices import ActionKind, ActionStatus
from ispbill.network.connections import driver_for
from ispbill.network.drivers.base import RouterCommandError, RouterUnavailable, Target
from ispbill.network.models import EnforcementAction, NetworkState, Router
from ispbill.worker import outbox

log = logging.getLogger("ispbill.network")


def mark_router(router: Router, *, now, error: str = "") -> None:
    if error:
        Router.objects.filter(pk=router.pk).update(
            last_error=error[:2000], last_error_at=now, consecutive_failures=F("consecutive_failures") + 1
        )
    else:
        Router.objects.filter(pk=router.pk).update(last_ok_at=now, consecutive_failures=0)


@outbox.handler(services.ENFORCE_TOPIC)
def enforce(item, attempt) -> None:
    now = attempt.now
    action = EnforcementAction.objects.select_related("subscriber__package", "router").get(pk=item.payload["action_id"])
    if action.status in (ActionStatus.DONE, ActionStatus.SUPERSEDED, ActionStatus.SKIPPED):
        return
    generation = NetworkState.objects.filter(subscriber_id=action.subscriber_id).values_list("generation", flat=True).first()
    if generation is not None and generation > action.generation:
        EnforcementAction.objects.filter(pk=action.pk).update(status=ActionStatus.SUPERSEDED, done_at=now)
        return
    sub = action.subscriber
    router = action.router or sub.router
    if router is None:
        services.record_applied(action, now=now, status=ActionStatus.SKIPPED, note="no router assigned to this subscriber")
        return
    EnforcementAction.objects.filter(pk=action.pk).update(attempts=F("attempts") + 1)
    target = Target(subscriber_id=sub.pk, username=sub.pppoe_username, profile=sub.package.router_profile or "default")
    driver = driver_for(router)
    try:
        if action.action == ActionKind.SUSPEND:
            driver.suspend(target)
        else:
            driver.restore(target)
    except RouterUnavailable as exc:
        mark_router(router, now=now, error=f"{exc.reason}: {exc.message}")
        EnforcementAction.objects.filter(pk=action.pk).update(error=f"router unavailable ({exc.reason}): {exc.message}"[:2000])
        raise
    except RouterCommandError as exc:
        mark_router(router, now=now)
        EnforcementAction.objects.filter(pk=action.pk).update(status=ActionStatus.FAILED, error=exc.message[:2000], done_at=now)
        raise outbox.PermanentFailure(f"router refused: {exc.message}") from None
    mark_router(router, now=now)
    services.record_applied(action, now=now)
