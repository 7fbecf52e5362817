"""What an operator types into the console's forms, read as the field's value; the language a browser asks for."""

from __future__ import annotations

import pytest

from hub.http.console.i18n import pick_language
from hub.http.console.pages import _typed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("field", "typed", "value"), [
    ("customer.phone", "13800138000", "13800138000"),        # digits stay a phone number, not a number
    ("customer.address", '["not", "json"]', '["not", "json"]'),  # text is taken as typed
    ("customer.name", "null", "null"),                        # never None: the console does not empty a field
    ("customer.name", "  王芳  ", "王芳"),
    ("production.progress", "60", 60),                        # a whole-number field gets a number
    ("production.progress", "sixty", "sixty"),                # ... or the text, for the field to refuse
    ("parts.reserved", "true", True),
    ("parts.reserved", "否", False),
    ("billing.amount", "149.90", "149.90"),                   # decimals travel as text
])
def test_typed_text_becomes_the_fields_value(field: str, typed: str, value: object) -> None:
    assert _typed(field, typed) == value and type(_typed(field, typed)) is type(value)


@pytest.mark.parametrize(("accept", "lang"), [
    ("zh;q=0, en;q=0.5", "en"),  # q=0 means "not this one"
    ("zh;q=0", "en"),
    ("zh-TW,zh;q=0.9", "zh"),
    ("", "en"),
])
def test_the_language_a_browser_asks_for(accept: str, lang: str) -> None:
    assert pick_language(None, accept) == lang
