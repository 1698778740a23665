"""notifications/sms.py: encoding and segment counts (what an SMS costs)."""

from __future__ import annotations

import pytest

from ispbill.notifications.sms import sms_cost

BANGLA = "অ"  # U+0985, one UTF-16 unit
EMOJI = "😀"  # U+1F600, a surrogate pair: two UTF-16 units


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (159, 1), (160, 1), (161, 2), (305, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_single_160_then_153_per_segment(length, segments):
    cost = sms_cost("a" * length)
    assert (cost.encoding, cost.units, cost.segments) == ("GSM-7", length, segments)


@pytest.mark.parametrize("char", ["€", "{", "}", "[", "]", "~", "\\", "^", "|"])
def test_gsm7_extension_characters_count_twice(char):
    assert sms_cost(char).units == 2
    full = sms_cost(char * 80)
    assert (full.encoding, full.units, full.segments) == ("GSM-7", 160, 1)
    over = sms_cost(char * 80 + "a")
    assert (over.units, over.segments) == (161, 2)


def test_gsm7_basic_symbols_count_once():
    text = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà\n\r "
    cost = sms_cost(text)
    assert (cost.encoding, cost.units) == ("GSM-7", len(text))


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_single_70_then_67_per_segment(length, segments):
    cost = sms_cost(BANGLA * length)
    assert (cost.encoding, cost.units, cost.segments) == ("UCS-2", length, segments)


def test_bangla_text_is_ucs2():
    cost = sms_cost("প্রিয় গ্রাহক, আপনার বিল ৫০০ টাকা।")
    assert cost.encoding == "UCS-2"
    assert cost.units == len("প্রিয় গ্রাহক, আপনার বিল ৫০০ টাকা।")


@pytest.mark.parametrize("char", ["৳", "`", "ç", "—", "’", "ক"])
def test_one_character_outside_gsm7_makes_the_whole_text_ucs2(char):
    text = "a" * 100 + char
    cost = sms_cost(text)
    assert (cost.encoding, cost.units, cost.segments) == ("UCS-2", 101, 2)


def test_emoji_counts_two_utf16_units():
    assert sms_cost(EMOJI).units == 2
    assert (sms_cost(EMOJI * 35).units, sms_cost(EMOJI * 35).segments) == (70, 1)
    assert (sms_cost(EMOJI * 35 + "a").units, sms_cost(EMOJI * 35 + "a").segments) == (71, 2)


def test_empty_text_costs_nothing():
    cost = sms_cost("")
    assert (cost.units, cost.segments) == (0, 0)


def test_extension_character_is_not_split_between_segments():
    # 152 + 2 + 152 = 306 septets, but the escape pair cannot straddle the 153 boundary:
    # segment one holds 152, segment two the pair and 151 more, segment three the rest.
    straddling = sms_cost("a" * 152 + "€" + "a" * 152)
    assert (straddling.units, straddling.segments) == (306, 3)
    # Shifted by one the pair sits at the start of segment two and two segments suffice.
    aligned = sms_cost("a" * 153 + "€" + "a" * 151)
    assert (aligned.units, aligned.segments) == (306, 2)


def test_surrogate_pair_is_not_split_between_segments():
    straddling = sms_cost("a" * 66 + EMOJI + "a" * 66)
    assert (straddling.encoding, straddling.units, straddling.segments) == ("UCS-2", 134, 3)
    aligned = sms_cost("a" * 67 + EMOJI + "a" * 65)
    assert (aligned.units, aligned.segments) == (134, 2)


def test_wide_characters_at_the_end_of_a_single_segment():
    assert (sms_cost("a" * 158 + "€").units, sms_cost("a" * 158 + "€").segments) == (160, 1)
    assert (sms_cost("a" * 159 + "€").units, sms_cost("a" * 159 + "€").segments) == (161, 2)
    assert (sms_cost("a" * 68 + EMOJI).units, sms_cost("a" * 68 + EMOJI).segments) == (70, 1)
    assert (sms_cost("a" * 69 + EMOJI).units, sms_cost("a" * 69 + EMOJI).segments) == (71, 2)
