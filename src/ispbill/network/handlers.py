"""The ``network.enforce`` outbox handler: apply one EnforcementAction on its router."""

from __future__ import annotations

import logging

from django.db.models import F

from ispbill.network import services
from ispbill.network.choices import ActionKind, ActionStatus, NetState
from ispbill.network.connections import driver_for
from ispbill.network.drivers.base import Driver, DriverError, RouterCommandError, RouterUnavailable, Target
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
    _reassert_if_overtaken(action, target, driver)


def _reassert_if_overtaken(action: EnforcementAction, target: Target, driver: Driver) -> None:
    """The generation check above runs before this action's commands reach the router. A
    newer action (a payment's restore) requested meanwhile may have run to the end first,
    and then this action's writes undid it. So once done, look again: if a newer state is
    wanted, put it back (idempotent when it is already there). Should the router fail
    now, the reconcile job repairs the drift."""
    newest = (
        NetworkState.objects.filter(subscriber_id=action.subscriber_id).values_list("generation", "desired").first()
    )
    if newest is None or newest[0] <= action.generation:
        return
    try:
        if newest[1] == NetState.SUSPENDED:
            driver.suspend(target)
        else:
            driver.restore(target)
    except DriverError as exc:
        log.warning("%s overtaken by generation %s while applied; re-applying %s failed: %s",
                    action, newest[0], newest[1], exc)
