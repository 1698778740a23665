"""Network drivers behind one interface (:mod:`ispbill.network.drivers.base`)."""

from ispbill.network.drivers.base import (
    ActiveSession,
    AddressListEntry,
    BulkResult,
    Driver,
    DriverError,
    RouterCommandError,
    RouterState,
    RouterUnavailable,
    SecretInfo,
    SecretNotFound,
    Target,
)

__all__ = [
    "ActiveSession",
    "AddressListEntry",
    "BulkResult",
    "Driver",
    "DriverError",
    "RouterCommandError",
    "RouterState",
    "RouterUnavailable",
    "SecretInfo",
    "SecretNotFound",
    "Target",
]
