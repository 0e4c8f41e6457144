"""The API's JSON parser: JSON with a NUL character or a lone surrogate anywhere (a key or a
string) is a malformed request. Postgres stores neither text nor jsonb with NUL, and no UTF-8
encoder takes a lone surrogate (`"\\ud800"` is valid JSON, but not Unicode text): either would
otherwise fail deep in a service, or while an error message echoes the field, as a 500 (found
by tests/security and tests/orders/test_batch_review.py)."""

import io
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# In a UTF-8 body, the only ways to write NUL or a surrogate are the escapes `\u0000` and
# `\udXXX` (raw control characters are not JSON; raw surrogates are not UTF-8). A body with
# neither is not walked; `\\u0000` (an escaped backslash) only costs the walk.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UTF8 = {"utf-8", "utf8"}


def _bad_text(value) -> str | None:
    """What is wrong with the first string in `value` (a parsed JSON document) that holds a NUL
    character or a lone surrogate, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "null characters (\\u0000) are not allowed."
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "lone surrogates (\\ud800-\\udfff without their pair) are not text."
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            wrong = _bad_text(key) or _bad_text(item)
            if wrong:
                return wrong
    elif isinstance(value, list):
        for item in value:
            wrong = _bad_text(item)
            if wrong:
                return wrong
    return None


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        encoding = ((parser_context or {}).get("encoding") or "utf-8").lower()
        if encoding in _UTF8 and not _SUSPECT.search(raw):
            return data
        wrong = _bad_text(data)
        if wrong:
            raise ParseError(f"JSON parse error - {wrong}")
        return data
