import logging

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from plum.cache import RedisCache
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
    _count = 0
    _oldest = None

    def allow_request(self, request, view):
        """Fails open when the cache (Redis) is unreachable: the request rate is a fairness
        limit, and an issuance must not fail because Redis is down (docs/reliability.md)."""
        try:
            cache = caches["default"]
            if isinstance(cache, RedisCache) and self.rate is not None:
                return self._allow_in_redis(cache, request, view)
            return super().allow_request(request, view)
        except (_CacheDown, OSError) as exc:
            logger.warning("Cache unavailable; request rate not checked: %s", exc)
            return True

    def _allow_in_redis(self, cache, request, view) -> bool:
        """DRF's sliding-window log (SimpleRateThrottle: the request times of the last
        `duration` seconds, newest first; a request is let in while there are fewer than
        `num_requests`), kept as a Redis list and decided by one script: one round trip
        instead of a read and a write of the whole pickled log, and atomic."""
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        client = cache._cache.get_client(write=True)
        script = getattr(client, "_plum_throttle", None)
        if script is None:
            script = client._plum_throttle = client.register_script(_WINDOW_SCRIPT)
        allowed, self._count, oldest = script(
            keys=[cache.make_and_validate_key(f"{self.key}:log")],
            args=[repr(float(self.now)), self.duration, self.num_requests],
        )
        self._oldest = None if oldest is None else float(oldest)
        return bool(allowed)

    def wait(self):
        if self._oldest is None and not self._count:
            return super().wait()
        # SimpleRateThrottle.wait over the log the script saw.
        remaining = self.duration - (self.now - self._oldest)
        available = self.num_requests - self._count + 1
        if available <= 0:
            return None
        return remaining / float(available)

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


# KEYS[1]: the client's log (request times, newest first). ARGV: now, duration, num_requests.
# Drops the times older than the window (`<= now - duration`, as DRF does), then lets the
# request in (logging its time, the key kept for `duration`) while fewer than num_requests
# remain. Returns {allowed, requests in the window, oldest time in it (when refused)}.
_WINDOW_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local duration = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
while true do
  local oldest = redis.call('LINDEX', key, -1)
  if not oldest or tonumber(oldest) > now - duration then break end
  redis.call('RPOP', key)
end
local n = redis.call('LLEN', key)
if n >= limit then
  return {0, n, redis.call('LINDEX', key, -1)}
end
redis.call('LPUSH', key, ARGV[1])
redis.call('EXPIRE', key, math.max(1, math.ceil(duration)))
return {1, n + 1, false}
"""
