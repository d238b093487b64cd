"""credd.forms: each named form is what the encoding it names really produces."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from credd.forms import NAMES, form_patterns, forms
from credd.mask import REPLACEMENT, Masker

values = st.text(st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=40).filter(
    lambda v: len(v.encode()) >= 4)
around = st.binary(max_size=8)


@settings(max_examples=300, deadline=None)
@given(value=values, before=around, after=around)
def test_each_form_is_in_what_its_encoder_gives(value, before, after):
    raw = value.encode()
    produced = {
        "plain": [raw],
        # base64 of the value with anything after it: echo's newline, more data
        "base64": [base64.b64encode(raw), base64.b64encode(raw + after)],
        "base64url": [base64.urlsafe_b64encode(raw + after)],
        "hex": [raw.hex().encode()], "HEX": [raw.hex().upper().encode()],
        "url": [quote(value, safe="").encode(), quote(value).encode(),
                quote_plus(value).encode()],
        "json": [json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()],
    }
    found = forms(value)
    assert raw in found and set(found.values()) <= set(NAMES)
    for form, name in found.items():
        assert any(form in text for text in produced[name]), (name, form)
    for name in ("plain", "hex"):  # always there, under their own name or an earlier one's
        for text in produced[name]:
            assert text in found
    for text in produced["url"] + [j[1:-1] for j in produced["json"]]:
        assert text in found or text == raw
    # inside a longer base64 string (deep): the value after 1 or 2 unknown bytes
    deep = forms(value, deep=True)
    for shift in (1, 2):
        encoded = base64.b64encode(before[:shift].rjust(shift, b"x") + raw + after)
        assert any(form in encoded for form in deep if deep[form] == "base64")


def test_names_and_sharing():
    token = "ghp_" + "Zq8" * 10
    assert sorted(forms(token).values()) == ["HEX", "base64", "hex", "plain"]  # url-safe as is
    assert sorted(forms("12345678").values()) == ["base64", "hex", "plain"]  # hex has no letters
    tricky = forms('p@ss w/"rd"~~~+42!é')  # "~~~" puts a + into its base64
    assert sorted(set(tricky.values())) == sorted(NAMES)
    assert tricky[b"cEBzcyB3LyJyZCJ-fn4rNDIhw6"] == "base64url"
    assert tricky[b'p@ss w/\\"rd\\"~~~+42!\\u00e9'] == "json"
    assert tricky[b"p%40ss+w%2F%22rd%22~~~%2B42%21%C3%A9"] == "url"


def test_short_values_have_no_forms():
    assert forms("abc") == {} and forms("é1") == {}  # 3 bytes
    assert b"abcd" in forms("abcd")
    patterns = form_patterns(["abc", "abcd", "abcd"])
    assert sorted(patterns.values) == sorted(set(forms("abcd")))
    assert patterns.values[patterns.caseless:] == [b"61626364"]  # hex: one pattern, any case


def test_masking_conceals_hex_in_any_case():
    value = "tok-" + "Zq8/" * 5
    masker = Masker(form_patterns([value]))
    hex_ = value.encode().hex()
    mixed = "".join(c.upper() if i % 3 else c for i, c in enumerate(hex_))
    for text in (hex_, hex_.upper(), mixed):
        assert masker.mask(f"dump: {text}\n".encode()) == b"dump: " + REPLACEMENT + b"\n"
    # split across writes in upper case, it is held back until it can be decided
    upper = hex_.upper().encode()
    assert masker.feed(b"x " + upper[:9]) == b"x "
    assert masker.feed(upper[9:] + b" y") + masker.flush() == REPLACEMENT + b" y"
