import re

from rest_framework import authentication, exceptions

from plum.services.api_clients import api_client_authenticate

_KEY_RE = re.compile(r"^plum_(live|test)_[A-Za-z0-9_\-]{20,200}$")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>`. request.user and request.auth are the ApiClient."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None  # another scheme (e.g. a browser session); let the next class try
        if len(parts) != 2 or not _KEY_RE.match(parts[1]):
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <key>'.", code="invalid_api_key"
            )
        client = api_client_authenticate(key=parts[1])
        if client is None:
            raise exceptions.AuthenticationFailed(
                "Unknown or revoked API key.", code="invalid_api_key"
            )
        return client, client

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
