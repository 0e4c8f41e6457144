import re

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from plum.services.api_clients import api_client_authenticate

_KEY_RE = re.compile(r"^plum_(live|test)_[A-Za-z0-9_\-]{20,200}$")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`. request.user and request.auth are the ApiClient.

    A header in another scheme (say `Basic`, sent by a proxy in front of a staging site) is left
    to the next authentication class, so a browser session still works behind such a proxy."""

    keyword = "Bearer"

    def authenticate(self, request):
        parts = request.META.get("HTTP_AUTHORIZATION", "").split()
        if not parts:
            return None
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2 or not _KEY_RE.match(parts[1]):
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <key>'.", code="invalid_api_key"
            )
        client = api_client_authenticate(key=parts[1])
        if client is None:
            # One answer for unknown and revoked keys: which keys ever existed is not the
            # caller's business.
            raise exceptions.AuthenticationFailed(
                "Unknown or revoked API key.", code="invalid_api_key"
            )
        return client, client

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the API key as an HTTP bearer scheme, so the schema names it and the docs'
    Authorize button sends it."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py create_api_client`: plum_live_... "
            "or plum_test_...",
        }
