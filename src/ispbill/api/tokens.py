from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from ispbill.api.models import ApiToken
from ispbill.audit import services as audit
from ispbill.core import clock
from ispbill.core.errors import NotFound

PREFIX = "isb_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(*, username: str, issued_by=None) -> str:
    """Create a token for ``username`` and return it; only its hash is kept. The audit
    log names the token by its prefix (``issued_by`` None: the system, e.g. the CLI)."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"no active user '{username}'", code="user_not_found")
    key = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, key_hash=_hash(key), prefix=key[:12])
        audit.record(
            action="token.issue", at=clock.now(), user=issued_by, target=audit.Target("user", user.pk, user.get_username()),
            after={"token": token.pk, "prefix": token.prefix}, summary=f"API token {token.prefix}… issued for {user.get_username()}",
        )
    return key


def user_for_token(key: str):
    if not key or not key.startswith(PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key), revoked=False).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
