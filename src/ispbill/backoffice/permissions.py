"""Permission checks for back-office views (one decorator) and the API (one helper)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from ispbill.backoffice.roles import PERMISSIONS


def has_permission(user, codename: str) -> bool:
    if codename not in PERMISSIONS:  # a typo must fail loudly, not deny quietly
        raise ValueError(f"unknown back-office permission '{codename}'")
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(f"backoffice.{codename}"))


def permission_required(codename: str):
    """View decorator: anonymous → login page; signed in without ``codename`` → 403."""
    if codename not in PERMISSIONS:
        raise ValueError(f"unknown back-office permission '{codename}'")

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_permission(request.user, codename):
                raise PermissionDenied(f"your role does not allow this ({PERMISSIONS[codename].lower()})")
            return view(request, *args, **kwargs)

        wrapped.required_permission = codename
        return wrapped

    return decorator
