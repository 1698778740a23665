"""Roles reach the API through the token's user: a write route calls
:func:`require_permission` with the back-office permission it needs."""

from __future__ import annotations

from ispbill.backoffice.permissions import has_permission
from ispbill.backoffice.roles import PERMISSIONS
from ispbill.core.errors import DomainError


def require_permission(request, *codenames: str) -> None:
    """Refuse (403 ``forbidden``) unless the token's user holds every permission named."""
    user = getattr(request, "auth", None) or getattr(request, "user", None)
    for codename in codenames:
        if not has_permission(user, codename):
            raise DomainError(
                f"this token's user may not do this (needs: {PERMISSIONS[codename].lower()})",
                code="forbidden", status=403,
            )
