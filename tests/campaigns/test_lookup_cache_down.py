"""Code lookups count unknown codes in the cache (Redis) to stop brute force. While Redis is
unreachable the limit cannot be kept: lookups are refused with a clear 503, never served
unguarded, never a 500."""

import pytest

from tests.stubs import free_port


@pytest.fixture
def cache_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.mark.django_db
def test_a_code_lookup_is_refused_while_the_cache_is_unreachable(client_api, cache_down):
    # when
    response = client_api.get("/api/v1/vouchers/NOSUCHCODE123")
    # then
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "lookup_unavailable"


@pytest.mark.django_db
def test_a_bulk_action_by_codes_is_refused_while_the_cache_is_unreachable(client_api, cache_down):
    # when
    response = client_api.post(
        "/api/v1/vouchers/recover", {"codes": ["NOSUCHCODE123"]}, format="json"
    )
    # then
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "lookup_unavailable"
