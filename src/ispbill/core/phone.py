"""Bangladeshi mobile numbers, normalised to E.164 (+8801XXXXXXXXX)."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
# Operator prefixes 013-019 (GP, Banglalink, Robi/Airtel, Teletalk).
_LOCAL = re.compile(r"^01[3-9][0-9]{8}$")


class PhoneError(ValueError):
    pass


def normalize_bd_mobile(raw: str) -> str:
    """Return ``+8801XXXXXXXXX`` or raise :class:`PhoneError`.

    Accepts ``01712345678``, ``8801712345678``, ``+880 1712-345678``, ``008801712345678``.
    """
    if not isinstance(raw, str):
        raise PhoneError("phone must be text")
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    # ASCII only: str.isdigit() and the \d below also accept Bengali or full-width
    # digits, which would otherwise pass through into the "+880..." result.
    if not (digits.isascii() and digits.isdigit()):
        raise PhoneError(f"'{raw}' is not a phone number")
    if digits.startswith("880"):
        digits = digits[2:]
    elif digits.startswith("1") and len(digits) == 10:
        digits = "0" + digits
    if not _LOCAL.match(digits):
        raise PhoneError(f"'{raw}' is not a Bangladeshi mobile number (01[3-9] followed by 8 digits)")
    return "+88" + digits
