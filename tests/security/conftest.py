"""Security fixtures: a cache key prefix per test, so the sign-in lockout, the failed-lookup
limit and the API throttles start empty."""

import uuid

import pytest


@pytest.fixture
def fresh_cache(settings):
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }
