"""SMS encoding and segment counting (pure).

GSM 03.38 text costs 160 characters in one segment and 153 per segment when
concatenated (extension characters count twice); anything else goes as UCS-2: 70, or 67
per segment when concatenated, counting UTF-16 code units. Bangla is always UCS-2.
An extension character or a surrogate pair is never split across two segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ispbill.core.money import round_amount, to_paisa

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True, slots=True)
class SmsCost:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets or UTF-16 code units
    segments: int


def sms_cost(text: str) -> SmsCost:
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        widths = [2 if c in _GSM_EXTENDED else 1 for c in text]
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        widths = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, multi, encoding = 70, 67, "UCS-2"
    units = sum(widths)
    if units <= single:
        return SmsCost(encoding, units, 1 if units else 0)
    # An escape sequence (GSM-7) or a surrogate pair (UCS-2) is never split between two
    # segments, so a segment may end one unit short of ``multi``.
    segments, used = 1, 0
    for w in widths:
        if used + w > multi:
            segments, used = segments + 1, 0
        used += w
    return SmsCost(encoding, units, segments)


def segments_cost_paisa(segments: int, price_per_segment: Decimal) -> int:
    """What ``segments`` SMS segments cost at ``price_per_segment`` taka, in paisa (the
    one rounding rule of :mod:`ispbill.core.money`)."""
    return to_paisa(round_amount(Decimal(segments) * price_per_segment))
