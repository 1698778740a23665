"""core/phone.py: Bangladeshi mobile numbers to +8801XXXXXXXXX."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ispbill.core.phone import PhoneError, normalize_bd_mobile

E164_BD_MOBILE = re.compile(r"\+8801[3-9][0-9]{8}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # the forms the docstring promises
        ("01712345678", "+8801712345678"),
        ("8801712345678", "+8801712345678"),
        ("+880 1712-345678", "+8801712345678"),
        ("008801712345678", "+8801712345678"),
        # already normalised
        ("+8801712345678", "+8801712345678"),
        # every operator prefix 013-019
        ("01312345678", "+8801312345678"),
        ("01412345678", "+8801412345678"),
        ("01512345678", "+8801512345678"),
        ("01612345678", "+8801612345678"),
        ("01812345678", "+8801812345678"),
        ("01912345678", "+8801912345678"),
        # separators people type or paste from spreadsheets
        ("017-1234-5678", "+8801712345678"),
        ("0171 234 5678", "+8801712345678"),
        ("(+880) 1712-345678", "+8801712345678"),
        ("+88 017 1234 5678", "+8801712345678"),
        ("00 880 1712 345678", "+8801712345678"),
        ("01712.345.678", "+8801712345678"),
        ("  01712345678\t", "+8801712345678"),
        ("+880\u00a01712345678", "+8801712345678"),  # no-break space
        # the leading zero dropped (as some exports do)
        ("1712345678", "+8801712345678"),
    ],
)
def test_accepted_forms(raw, expected):
    assert normalize_bd_mobile(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "00",
        "abc",
        "0171234567",  # 10 digits
        "017123456789",  # 12 digits
        "01212345678",  # 012 is not a mobile operator prefix
        "01112345678",
        "01012345678",
        "02712345678",  # not a mobile number at all
        "0291234567",  # Dhaka landline
        "+8802912345678",  # landline in international form
        "+880171234567",  # one digit short
        "+88017123456789",  # one digit long
        "88001712345678",  # country code plus the trunk zero
        "+8801212345678",
        "+441712345678",  # another country
        "+91 1712345678",
        "0171234567a",
        "01712-34567x",
        "01712/345678",  # '/' is not an accepted separator
        "++8801712345678",
    ],
)
def test_rejected_forms(raw):
    with pytest.raises(PhoneError):
        normalize_bd_mobile(raw)


@pytest.mark.parametrize("raw", [None, 1712345678, 8801712345678, b"01712345678", ["01712345678"]])
def test_rejects_non_text(raw):
    with pytest.raises(PhoneError):
        normalize_bd_mobile(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "০১৭১২৩৪৫৬৭৮",  # all Bengali digits
        "017১২৩৪৫৬৭৮",  # ASCII prefix, Bengali rest
        "+880১৭১২৩৪৫৬৭৮",
        "０１７１２３４５６７８",  # full-width
        "017１２３４５６７８",
        "0171234567²",  # superscript two is a str.isdigit() digit
    ],
)
def test_rejects_non_ascii_digits(raw):
    # The result is stored and sent to SMS providers as E.164: ASCII digits only.
    with pytest.raises(PhoneError):
        normalize_bd_mobile(raw)


def test_embedded_newlines_are_separators():
    assert normalize_bd_mobile("017\n1234\n5678\n") == "+8801712345678"


def test_phone_error_is_a_value_error():
    assert issubclass(PhoneError, ValueError)


local_numbers = st.builds(
    lambda op, rest: f"01{op}{rest:08d}",
    st.integers(min_value=3, max_value=9),
    st.integers(min_value=0, max_value=10**8 - 1),
)


@given(
    local=local_numbers,
    prefix=st.sampled_from(["", "88", "+88", "0088", "+88 ", "(+88) ", "0088-"]),
)
def test_every_valid_number_normalises_in_every_written_form(local, prefix):
    result = normalize_bd_mobile(prefix + local)
    assert result == "+88" + local
    assert E164_BD_MOBILE.fullmatch(result)


@given(local=local_numbers)
def test_normalising_is_idempotent(local):
    once = normalize_bd_mobile(local)
    assert normalize_bd_mobile(once) == once


@given(st.text(max_size=20))
def test_any_text_is_either_rejected_or_a_valid_e164_mobile(raw):
    try:
        result = normalize_bd_mobile(raw)
    except PhoneError:
        return
    assert E164_BD_MOBILE.fullmatch(result), result
