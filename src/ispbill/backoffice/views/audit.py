"""Back-office pages: the audit log (who did what, when, with the values before and after)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import render
from django.urls import NoReverseMatch, path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from ispbill.audit import selectors
from ispbill.audit.models import ActorKind
from ispbill.backoffice.permissions import permission_required

#: Target types that have a back-office page, and the URL name of that page (one
#: ``pk`` argument). A page that is not (yet) installed simply gets no link.
TARGET_PAGES = {
    "subscriber": "backoffice:subscriber",
    "invoice": "backoffice:invoice",
    "payment": "backoffice:payment",
    "router": "backoffice:router",
}

#: Areas offered as action filters (any prefix may be typed).
ACTION_AREAS = (
    "subscriber.", "package.", "invoice.", "credit_note.", "payment.", "reminder.", "router.", "token.",
)


def _linker():
    """``link(type, id)`` → URL or None; each type is reversed once per page."""
    known: dict[str, bool] = {}

    def link(target_type: str, target_id) -> str | None:
        name = TARGET_PAGES.get(target_type)
        if name is None or target_id is None:
            return None
        if known.get(target_type) is False:
            return None
        try:
            url = reverse(name, args=[target_id])
        except NoReverseMatch:
            known[target_type] = False
            return None
        known[target_type] = True
        return url

    return link


@require_GET
@permission_required("view_audit")
def audit_log(request):
    filters = selectors.AuditFilters.from_query(request.GET)
    page = selectors.event_page(filters, after=request.GET.get("after"), before=request.GET.get("before"))
    link = _linker()
    for row in page.rows:
        row.target_url = link(row.target_type, row.target_id)
        row.subscriber_url = (
            link("subscriber", row.subscriber_id) if row.subscriber_id and row.target_type != "subscriber" else None
        )
    staff = list(get_user_model().objects.order_by("username").values_list("id", "username")[:500])
    context = {
        "title": _("Audit log"),
        "nav": "audit",
        "filters": filters,
        "page": page,
        "actor_choices": [(str(pk), name) for pk, name in staff],
        "actor_kinds": [(k, label) for k, label in ActorKind.choices if k != ActorKind.STAFF],
        "action_areas": ACTION_AREAS,
    }
    return render(request, "backoffice/audit_list.html", context)


urlpatterns: list = [
    path("audit/", audit_log, name="audit"),
]
