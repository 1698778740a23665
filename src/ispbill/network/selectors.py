"""Reads about routers for the back office: health, who is on each, what reconciliation
found. A fixed number of queries however many routers or subscribers there are."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, OuterRef, Q, Subquery

from ispbill.network.choices import ActionStatus
from ispbill.network.models import EnforcementAction, ReconcileRun, Router
from ispbill.subscribers.choices import SubscriberStatus

LEAKAGE_LISTS = ("online_unpaid", "unknown_on_router", "paid_but_suspended", "missing_on_router")


@dataclass(frozen=True)
class RunSummary:
    run: ReconcileRun
    counts: dict[str, int]

    @property
    def leakage(self) -> int:
        return sum(self.counts.values())


def _summary(run: ReconcileRun | None) -> RunSummary | None:
    if run is None:
        return None
    return RunSummary(run, {name: len(getattr(run, name) or []) for name in LEAKAGE_LISTS})


def _with_counts(qs):
    return qs.annotate(
        subscriber_count=Count("subscribers", distinct=True),
        active_count=Count("subscribers", filter=Q(subscribers__status=SubscriberStatus.ACTIVE), distinct=True),
        suspended_count=Count("subscribers", filter=Q(subscribers__status=SubscriberStatus.SUSPENDED), distinct=True),
        latest_run_id=Subquery(
            ReconcileRun.objects.filter(router=OuterRef("pk")).order_by("-started_at", "-id").values("pk")[:1]
        ),
    )


def router_overview() -> list[tuple[Router, RunSummary | None]]:
    """Every router with its subscriber counts and its latest reconcile run: two queries."""
    routers = list(_with_counts(Router.objects.all()).order_by("name"))
    run_ids = [r.latest_run_id for r in routers if r.latest_run_id]
    runs = ReconcileRun.objects.in_bulk(run_ids) if run_ids else {}
    return [(r, _summary(runs.get(r.latest_run_id))) for r in routers]


@dataclass(frozen=True)
class RouterDetail:
    router: Router
    runs: list[RunSummary]
    actions: list[EnforcementAction]
    failing_actions: int


def router_detail(router_id: int, *, runs: int = 10, actions: int = 25) -> RouterDetail | None:
    router = _with_counts(Router.objects.filter(pk=router_id)).first()
    if router is None:
        return None
    recent_runs = [_summary(run) for run in ReconcileRun.objects.filter(router_id=router_id).order_by("-started_at", "-id")[:runs]]
    recent_actions = list(
        EnforcementAction.objects.filter(router_id=router_id).select_related("subscriber").order_by("-created_at", "-id")[:actions]
    )
    failing = EnforcementAction.objects.filter(router_id=router_id, status=ActionStatus.FAILED).count()
    return RouterDetail(router, recent_runs, recent_actions, failing)


def router_by_id(router_id: int) -> Router | None:
    return Router.objects.filter(pk=router_id).first()
