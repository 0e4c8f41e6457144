import logging

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from plum.models import ApiClient

logger = logging.getLogger(__name__)

try:  # the cache's own errors when it is Redis: unreachable, timed out
    from redis.exceptions import RedisError as _CacheDown
except ImportError:  # pragma: no cover - redis is a dependency; locmem raises nothing here
    _CacheDown = OSError


class ApiClientRateThrottle(SimpleRateThrottle):
    """Per API client (or per user for sessions) request rate. Not atomic; where a limit is a
    security boundary (code guessing) an atomic counter is used instead."""

    scope = "api_client"

    def allow_request(self, request, view):
        """Fails open when the cache (Redis) is unreachable: the request rate is a fairness
        limit, and an issuance must not fail because Redis is down (docs/reliability.md)."""
        try:
            return super().allow_request(request, view)
        except (_CacheDown, OSError) as exc:
            logger.warning("Cache unavailable; request rate not checked: %s", exc)
            return True

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
