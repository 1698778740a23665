"""Secrets at rest (router passwords, RADIUS secrets): Fernet with a key from settings.

The key is ``ISPBILL_FIELD_KEY`` (a Fernet key) when set, otherwise derived from
``SECRET_KEY`` with HKDF, so rotating SECRET_KEY without setting ISPBILL_FIELD_KEY first
makes stored router passwords unreadable (they must then be entered again).
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnreadable(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(secret_key: str, field_key: str) -> Fernet:
    if field_key:
        return Fernet(field_key.encode())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"ispbill-field-key", info=b"fernet").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _current() -> Fernet:
    return _fernet(settings.SECRET_KEY, os.environ.get("ISPBILL_FIELD_KEY", ""))


def encrypt(plain: str) -> str:
    return _current().encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("stored secret cannot be decrypted with the current key (SECRET_KEY or ISPBILL_FIELD_KEY changed?)") from None
