"""The API's JSON parser: JSON with a NUL character anywhere (a key or a string) is a
malformed request. Postgres stores neither text nor jsonb with NUL, so it would otherwise fail
deep in a service as a 500 (found by tests/security)."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _has_nul(data):
            raise ParseError("JSON parse error - null characters (\\u0000) are not allowed.")
        return data
