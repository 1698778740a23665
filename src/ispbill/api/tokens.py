from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.utils import timezone

from ispbill.api.models import ApiToken
from ispbill.core.errors import NotFound

PREFIX = "isb_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(*, username: str) -> str:
    """Create a token for ``username`` and return it; only its hash is kept."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"no active user '{username}'", code="user_not_found")
    key = PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_hash(key), prefix=key[:12])
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
