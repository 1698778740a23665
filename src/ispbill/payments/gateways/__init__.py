"""Payment gateway adapters behind one interface (see :mod:`.base` for the contract).

``configured_gateways(environ)`` builds the adapters whose environment variables are
all set; nothing is read or connected at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ispbill.payments.gateways.base import (
    Confirmation,
    Expected,
    Gateway,
    GatewayError,
    GatewayNotConfigured,
    GatewayRejected,
    GatewayUnavailable,
    NotSupported,
    StartRequest,
    StartResult,
    Status,
    WebhookAck,
    callback_url,
    ensure_matches,
    webhook_url,
)
from ispbill.payments.gateways.bkash import BkashGateway, InMemoryTokenStore, TokenStore
from ispbill.payments.gateways.nagad import NagadGateway
from ispbill.payments.gateways.sslcommerz import SslcommerzGateway

GATEWAYS: dict[str, type[Gateway]] = {g.name: g for g in (BkashGateway, NagadGateway, SslcommerzGateway)}

__all__ = [
    "GATEWAYS", "BkashGateway", "Confirmation", "Expected", "Gateway", "GatewayError", "GatewayNotConfigured",
    "GatewayRejected", "GatewayUnavailable", "InMemoryTokenStore", "NagadGateway", "NotSupported",
    "SslcommerzGateway", "StartRequest", "StartResult", "Status", "TokenStore", "WebhookAck", "callback_url",
    "configured_gateways", "ensure_matches", "webhook_url",
]


def configured_gateways(environ: Mapping[str, str] | None = None, **options) -> dict[str, Gateway]:
    """``{name: adapter}`` for every gateway whose variables are all set (non-blank).

    A gateway whose variables are all set but unusable (a key that does not load) raises
    :class:`GatewayNotConfigured` rather than disappearing quietly. ``options[name]``
    (a dict) is passed to that adapter's constructor, e.g. ``bkash={"token_store": …}``.
    """
    environ = os.environ if environ is None else environ
    found: dict[str, Gateway] = {}
    for name, cls in GATEWAYS.items():
        if all(str(environ.get(var) or "").strip() for var in cls.env_vars):
            found[name] = cls.from_env(environ, **options.get(name, {}))
    return found
