"""The API's request-rate throttle lives in the cache (Redis). While Redis is unreachable it
is not checked (logged) instead of failing every request with a 500."""

import pytest

from tests.stubs import free_port


@pytest.mark.django_db
def test_the_api_answers_while_the_cache_is_unreachable(client_api, settings, caplog):
    # given: the cache is a Redis nobody listens on
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    # when
    response = client_api.get("/api/v1/programmes")
    # then
    assert response.status_code == 200
    assert "request rate not checked" in caplog.text
