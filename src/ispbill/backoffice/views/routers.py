"""Back-office pages: routers. Health and leakage for every router; per router its
enforcement history and reconcile runs; actions that talk to the router (test the
connection, show the drift, reconcile now, import its PPP secrets as subscribers) and
adding or editing one. Whatever talks to a router waits at most ``ROUTER_TIMEOUT``
seconds for it and says precisely what went wrong."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ispbill.backoffice.forms import client_ip
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.views.common import SeeOther, form_errors
from ispbill.core import clock
from ispbill.core.errors import DomainError
from ispbill.core.phone import PhoneError, normalize_bd_mobile
from ispbill.core.timeutil import local_date
from ispbill.network import importer, selectors
from ispbill.network import routers as services
from ispbill.network.choices import EnforcementMethod
from ispbill.network.drivers.base import RouterUnavailable
from ispbill.network.reconcile import compare_router
from ispbill.plans.models import Package

#: Seconds a page waits for a router before it reports a timeout.
ROUTER_TIMEOUT = 5.0

_REASONS = {
    "timeout": gettext_lazy("the router did not answer in time"),
    "auth": gettext_lazy("the router refused the login (check the API user name and password)"),
    "connect": gettext_lazy("could not connect (connection refused or host unreachable)"),
    "closed": gettext_lazy("the router closed the connection"),
    "tls": gettext_lazy("the TLS handshake failed"),
}


def explain(reason: str, detail: str) -> str:
    """A driver failure as staff read it: what kind of failure, then the exact detail."""
    kind = _REASONS.get(reason)
    return f"{kind} — {detail}" if kind else detail


def _failure(exc: Exception) -> str:
    if isinstance(exc, RouterUnavailable):
        return explain(exc.reason, exc.message)
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def _check_error(error: str) -> str:
    """``check_router``'s "reason: detail" as :func:`explain` words it."""
    reason, sep, detail = error.partition(": ")
    return explain(reason, detail) if sep and reason in _REASONS else error


# -- forms ------------------------------------------------------------------------------------

class RouterForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    host = forms.CharField(label=gettext_lazy("Host (IP address or name)"), max_length=255)
    port = forms.IntegerField(label=gettext_lazy("API port"), min_value=1, max_value=65535, initial=8728)
    use_tls = forms.BooleanField(label=gettext_lazy("Use TLS (api-ssl)"), required=False)
    tls_verify = forms.BooleanField(label=gettext_lazy("Verify the TLS certificate"), required=False, initial=True)
    username = forms.CharField(label=gettext_lazy("API user name"), max_length=100, required=False)
    password = forms.CharField(
        label=gettext_lazy("API password"), required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    method = forms.ChoiceField(label=gettext_lazy("Enforcement"), choices=EnforcementMethod.choices,
                               initial=EnforcementMethod.ROUTEROS)
    suspended_profile = forms.CharField(label=gettext_lazy("Suspended profile"), max_length=100,
                                        initial="Suspended_Profile")
    suspended_address_list = forms.CharField(label=gettext_lazy("Suspended address list"), max_length=100,
                                             initial="suspended")
    radius_secret = forms.CharField(
        label=gettext_lazy("RADIUS shared secret"), required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    coa_port = forms.IntegerField(label=gettext_lazy("CoA port"), min_value=1, max_value=65535, initial=3799)
    is_active = forms.BooleanField(label=gettext_lazy("Active (enforced and reconciled)"), required=False, initial=True)

    def changes(self, *, editing: bool) -> dict:
        """The service's keyword arguments; on an edit a blank secret keeps the stored one."""
        data = dict(self.cleaned_data)
        if editing:
            for secret in ("password", "radius_secret"):
                if not data.get(secret):
                    data.pop(secret, None)
        return data


class ImportForm(forms.Form):
    default_package = forms.ModelChoiceField(
        label=gettext_lazy("Package for profiles that match none"), queryset=Package.objects.order_by("name"),
        required=False,
    )
    maps = forms.CharField(
        label=gettext_lazy("Profile → package (one PROFILE=PACKAGE NAME a line)"), required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    phone_from_comment = forms.BooleanField(label=gettext_lazy("Take the phone number from the comment"),
                                            required=False, initial=True)
    placeholder_phone = forms.CharField(label=gettext_lazy("Phone for secrets without one"), required=False,
                                        max_length=20)

    def clean_maps(self):
        lines = [line.strip() for line in self.cleaned_data["maps"].splitlines() if line.strip()]
        try:
            return importer.parse_maps(lines)
        except importer.ImportRefused as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_placeholder_phone(self):
        value = self.cleaned_data["placeholder_phone"].strip()
        if not value:
            return ""
        try:
            return normalize_bd_mobile(value)
        except PhoneError as exc:
            raise forms.ValidationError(str(exc)) from None


# -- pages ------------------------------------------------------------------------------------

def _router_or_404(pk: int):
    router = selectors.router_by_id(pk)
    if router is None:
        raise Http404("no such router")
    return router


def _back(pk: int) -> SeeOther:
    return SeeOther(reverse("backoffice:router", args=[pk]))


@require_GET
@permission_required("view_subscribers")
def router_list(request):
    context = {"title": _("Routers"), "nav": "routers", "rows": selectors.router_overview(), "now": clock.now()}
    return render(request, "backoffice/router_list.html", context)


@require_GET
@permission_required("view_subscribers")
def router_detail(request, pk: int):
    detail = selectors.router_detail(pk)
    if detail is None:
        raise Http404("no such router")
    context = {"title": detail.router.name, "nav": "routers", "x": detail, "r": detail.router}
    return render(request, "backoffice/router_detail.html", context)


def _audit(request) -> dict:
    return {"user": request.user, "ip": client_ip(request)}


def _save_router(request, form: RouterForm, *, router_id: int | None):
    """Call the service; a refusal is put on the form (its field when it names one)."""
    try:
        if router_id is None:
            return services.create_router(**form.changes(editing=False), now=clock.now(), **_audit(request))
        return services.update_router(router_id=router_id, **form.changes(editing=True), now=clock.now(), **_audit(request))
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return None


@require_http_methods(["GET", "POST"])
@permission_required("manage_routers")
def router_add(request):
    form = RouterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = _save_router(request, form, router_id=None)
        if created is not None:
            messages.success(request, _("Router %(name)s added. Test the connection next.") % {"name": created.name})
            return _back(created.pk)
    status = 422 if form.is_bound else 200
    context = {"title": _("Add a router"), "nav": "routers", "form": form, "router": None}
    return render(request, "backoffice/router_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required("manage_routers")
def router_edit(request, pk: int):
    router = _router_or_404(pk)
    if request.method == "POST":
        form = RouterForm(request.POST)
        if form.is_valid() and _save_router(request, form, router_id=pk) is not None:
            messages.success(request, _("Router %(name)s saved.") % {"name": form.cleaned_data["name"]})
            return _back(pk)
    else:
        form = RouterForm(initial={f: getattr(router, f) for f in RouterForm.base_fields if f not in ("password", "radius_secret")})
    context = {"title": _("Edit %(name)s") % {"name": router.name}, "nav": "routers", "form": form, "router": router}
    return render(request, "backoffice/router_form.html", context, status=422 if form.is_bound else 200)


@require_POST
@permission_required("manage_routers")
def router_test(request, pk: int):
    router = _router_or_404(pk)
    result = services.check_router(router_id=pk, now=clock.now(), timeout=ROUTER_TIMEOUT, **_audit(request))
    if result.reachable:
        messages.success(request, _("Connected to %(name)s: identity %(identity)s, RouterOS %(version)s.") % {
            "name": router.name, "identity": result.identity or "?", "version": result.version or "?"})
    else:
        messages.error(request, _("Connection test of %(name)s failed: %(error)s") % {
            "name": router.name, "error": _check_error(result.error or "")})
    return _back(pk)


@require_POST
@permission_required("manage_routers")
def router_reconcile(request, pk: int):
    _router_or_404(pk)
    try:
        run = services.reconcile_by_hand(router_id=pk, now=clock.now(), **_audit(request))
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(pk)
    if run.error:
        messages.error(request, _("Reconcile failed: %(error)s") % {"error": run.error})
    else:
        messages.success(request, _(
            "Reconciled: %(secrets)s secrets, %(online)s online, %(repaired)s repaired, %(unpaid)s online unpaid, "
            "%(unknown)s unknown on the router."
        ) % {"secrets": run.secrets, "online": run.online, "repaired": run.repaired,
             "unpaid": len(run.online_unpaid), "unknown": len(run.unknown_on_router)})
    return _back(pk)


@require_GET
@permission_required("manage_routers")
def router_drift(request, pk: int):
    """What differs between billing and the router right now; nothing is repaired."""
    router = _router_or_404(pk)
    preview, error = None, ""
    try:
        preview = compare_router(router, timeout=ROUTER_TIMEOUT)
    except Exception as exc:  # unreachable, login refused, a refused read, an unreadable stored password
        error = _failure(exc)
    context = {"title": _("Drift: %(name)s") % {"name": router.name}, "nav": "routers", "r": router,
               "preview": preview, "error": error, "checked_at": clock.now()}
    return render(request, "backoffice/router_drift.html", context)


def _plan(router, form: ImportForm):
    """Read the router and plan the import; (plan, error)."""
    try:
        secrets, suspended_profile = importer.read_secrets(router, timeout=ROUTER_TIMEOUT)
    except Exception as exc:  # unreachable, login refused, an unreadable stored password
        return None, _failure(exc)
    data = form.cleaned_data
    plan = importer.plan_import(
        router=router, secrets=secrets, maps=data["maps"], default_package=data["default_package"],
        phone_from_comment=data["phone_from_comment"], placeholder_phone=data["placeholder_phone"],
        suspended_profile=suspended_profile,
    )
    return plan, ""


@require_GET
@permission_required("manage_routers")
def router_import(request, pk: int):
    """The import options; with ``preview`` the plan: who would be created, who skipped and why."""
    router = _router_or_404(pk)
    previewing = "preview" in request.GET
    form = ImportForm(request.GET if previewing else None)
    plan, error = None, ""
    if previewing and form.is_valid():
        plan, error = _plan(router, form)
    context = {"title": _("Import from %(name)s") % {"name": router.name}, "nav": "routers", "r": router,
               "form": form, "plan": plan, "error": error, "query": request.GET.urlencode()}
    return render(request, "backoffice/router_import.html", context)


@require_POST
@permission_required("manage_routers")
def router_import_confirm(request, pk: int):
    """Create the previewed subscribers. The router is read again; only secrets that were
    in the preview and still qualify are imported, all in one transaction."""
    router = _router_or_404(pk)
    form = ImportForm(request.POST)
    if not form.is_valid():
        form_errors(request, form)
        return SeeOther(reverse("backoffice:router-import", args=[pk]))
    approved = set(request.POST.getlist("username"))
    plan, error = _plan(router, form)
    if plan is None:
        messages.error(request, _("Nothing imported: %(error)s") % {"error": error})
        return _back(pk)
    plan.create = [item for item in plan.create if item.username in approved]
    if not plan.create:
        messages.info(request, _("Nothing to import."))
        return _back(pk)
    now = clock.now()
    try:
        created = importer.apply_import(plan, today=local_date(now), now=now, **_audit(request))
    except DomainError as exc:
        messages.error(request, _("Import rolled back, nothing created: %(error)s") % {"error": exc.message})
        return _back(pk)
    messages.success(request, _("Created %(count)s subscribers from %(name)s.") % {"count": created, "name": router.name})
    if len(approved) > created:
        messages.info(request, _("%(count)s previewed secrets no longer qualified and were left out.") % {
            "count": len(approved) - created})
    return _back(pk)


urlpatterns = [
    path("routers/", router_list, name="routers"),
    path("routers/add/", router_add, name="router-add"),
    path("routers/<int:pk>/", router_detail, name="router"),
    path("routers/<int:pk>/edit/", router_edit, name="router-edit"),
    path("routers/<int:pk>/test", router_test, name="router-test"),
    path("routers/<int:pk>/drift/", router_drift, name="router-drift"),
    path("routers/<int:pk>/reconcile", router_reconcile, name="router-reconcile"),
    path("routers/<int:pk>/import/", router_import, name="router-import"),
    path("routers/<int:pk>/import", router_import_confirm, name="router-import-confirm"),
]
