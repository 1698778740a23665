"""The bKash token cache in the database, shared by every web and worker process.

Implements the adapters' :class:`~ispbill.payments.gateways.bkash.TokenStore` protocol;
tokens are encrypted at rest with :mod:`ispbill.core.crypto`.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from ispbill.core import crypto
from ispbill.payments.gateways.bkash import BkashToken
from ispbill.payments.models import GatewayToken

log = logging.getLogger("ispbill.payments")


class DbTokenStore:
    """``get``/``set`` tokens by the adapter's cache key; a token that no longer
    decrypts (the key changed) reads as absent, so the adapter grants a new one."""

    def get(self, key: str) -> BkashToken | None:
        row = GatewayToken.objects.filter(gateway=key).first()
        if row is None:
            return None
        try:
            return BkashToken(
                id_token=crypto.decrypt(row.id_token), refresh_token=crypto.decrypt(row.refresh_token),
                expires_at=row.expires_at,
            )
        except crypto.SecretUnreadable:
            log.warning("stored gateway token cannot be decrypted (key changed?); a new one will be granted")
            return None

    def set(self, key: str, token: BkashToken) -> None:
        values = {
            "id_token": crypto.encrypt(token.id_token), "refresh_token": crypto.encrypt(token.refresh_token),
            "expires_at": token.expires_at,
        }
        try:
            with transaction.atomic():
                GatewayToken.objects.update_or_create(gateway=key, defaults=values)
        except IntegrityError:  # another process stored one first: ours is as good
            GatewayToken.objects.filter(gateway=key).update(**values)

    def __repr__(self) -> str:
        return "<DbTokenStore>"
