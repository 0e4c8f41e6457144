from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from plum.models import ApiClient


class ApiClientRateThrottle(SimpleRateThrottle):
    """Per API client (or per user for sessions) request rate. Not atomic; where a limit is a
    security boundary (code guessing) an atomic counter is used instead."""

    scope = "api_client"

    def get_rate(self):
        # SimpleRateThrottle.THROTTLE_RATES is the dict DRF held at import time; reading the
        # live setting lets a changed REST_FRAMEWORK (override_settings) take effect.
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError as exc:
            raise ImproperlyConfigured(
                f"No throttle rate for scope {self.scope!r} in DEFAULT_THROTTLE_RATES."
            ) from exc

    def get_cache_key(self, request, view):
        principal = request.user
        if isinstance(principal, ApiClient):
            ident = f"client:{principal.pk}"
        elif principal is not None and principal.is_authenticated:
            ident = f"user:{principal.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
