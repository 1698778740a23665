"""Back-office pages: staff users (who may sign in, with which role)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ispbill.backoffice import staff as services
from ispbill.backoffice.forms import client_ip
from ispbill.backoffice.permissions import permission_required
from ispbill.backoffice.roles import ROLES
from ispbill.backoffice.views.common import SeeOther, form_errors
from ispbill.core import clock
from ispbill.core.errors import DomainError

ROLE_LABELS = {
    "admin": gettext_lazy("Admin: everything, including settings and staff"),
    "billing": gettext_lazy("Billing: payments, packages, credit notes"),
    "support": gettext_lazy("Support: subscribers, suspensions, reminders, routers"),
    "viewer": gettext_lazy("Viewer: read only"),
}
ROLE_CHOICES = [(role, ROLE_LABELS.get(role, role)) for role in ROLES]


class StaffCreateForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("User name"), max_length=150)
    name = forms.CharField(label=gettext_lazy("Full name"), max_length=300, required=False)
    email = forms.EmailField(label=gettext_lazy("Email"), required=False)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES, initial="viewer")
    password = forms.CharField(label=gettext_lazy("Initial password"), strip=False,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES)


class PasswordForm(forms.Form):
    password = forms.CharField(label=gettext_lazy("New password"), strip=False,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}))


def _by(request) -> dict:
    return {"by": request.user, "ip": client_ip(request), "now": clock.now()}


def _back(pk: int) -> SeeOther:
    return SeeOther(reverse("backoffice:staff-user", args=[pk]))


@require_GET
@permission_required("manage_settings")
def staff_list(request):
    context = {"title": _("Staff"), "nav": "staff", "rows": services.staff_list(), "role_labels": ROLE_LABELS}
    return render(request, "backoffice/staff_list.html", context)


@require_http_methods(["GET", "POST"])
@permission_required("manage_settings")
def staff_add(request):
    form = StaffCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.create_staff_user(**form.cleaned_data, **_by(request))
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, _("Staff user %(name)s created.") % {"name": user.get_username()})
            return _back(user.pk)
    context = {"title": _("Add a staff user"), "nav": "staff", "form": form}
    return render(request, "backoffice/staff_form.html", context, status=422 if form.is_bound else 200)


@require_GET
@permission_required("manage_settings")
def staff_user(request, pk: int):
    row = services.staff_member(pk)
    if row is None:
        raise Http404("no such user")
    context = {
        "title": row.user.get_username(), "nav": "staff", "u": row.user, "role": row.role, "role_labels": ROLE_LABELS,
        "role_form": RoleForm(initial={"role": row.role}), "password_form": PasswordForm(),
        "is_me": row.user.pk == request.user.pk,
    }
    return render(request, "backoffice/staff_user.html", context)


def _act(request, pk: int, form, call, done: str):
    if not form.is_valid():
        form_errors(request, form)
        return _back(pk)
    try:
        call(**form.cleaned_data)
    except DomainError as exc:
        messages.error(request, exc.message)
        return SeeOther(reverse("backoffice:staff")) if exc.status == 404 else _back(pk)
    messages.success(request, done)
    return _back(pk)


@require_POST
@permission_required("manage_settings")
def staff_role(request, pk: int):
    return _act(
        request, pk, RoleForm(request.POST),
        lambda role: services.change_role(user_id=pk, role=role, **_by(request)), _("Role changed."),
    )


@require_POST
@permission_required("manage_settings")
def staff_password(request, pk: int):
    return _act(
        request, pk, PasswordForm(request.POST),
        lambda password: services.set_password(user_id=pk, password=password, **_by(request)),
        _("New password set; the user's other sessions have ended."),
    )


@require_POST
@permission_required("manage_settings")
def staff_deactivate(request, pk: int):
    return _act(
        request, pk, forms.Form(request.POST),
        lambda: services.set_active(user_id=pk, active=False, **_by(request)),
        _("Deactivated: the user can no longer sign in, and open sessions stop working."),
    )


@require_POST
@permission_required("manage_settings")
def staff_reactivate(request, pk: int):
    return _act(
        request, pk, forms.Form(request.POST),
        lambda: services.set_active(user_id=pk, active=True, **_by(request)), _("Reactivated."),
    )


urlpatterns = [
    path("staff/", staff_list, name="staff"),
    path("staff/add/", staff_add, name="staff-add"),
    path("staff/<int:pk>/", staff_user, name="staff-user"),
    path("staff/<int:pk>/role", staff_role, name="staff-role"),
    path("staff/<int:pk>/password", staff_password, name="staff-password"),
    path("staff/<int:pk>/deactivate", staff_deactivate, name="staff-deactivate"),
    path("staff/<int:pk>/reactivate", staff_reactivate, name="staff-reactivate"),
]
