"""Guessing codes: each client may try at most 30 unknown codes a minute, counted with an atomic
cache counter (not DRF's read-then-write throttle). Beyond that every lookup by code answers
429 too_many_failed_lookups before it reads the database; every failure is audited."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.cache.backends import base as cache_base
from django.core.cache.backends import locmem
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Redemption, Voucher
from campaigns.services.lookups import FAILED_LOOKUPS_LIMIT, FAILED_LOOKUPS_WINDOW_SECONDS
from plum.models import AuditEvent

pytestmark = pytest.mark.usefixtures("fresh_cache")

VOUCHERS = "/api/v1/vouchers"
TOO_MANY = {
    "error": {
        "code": "too_many_failed_lookups",
        "message": "Too many unknown codes were tried; wait before trying again.",
        "fields": {},
    }
}


@pytest.fixture
def unknown_codes(campaign, make_pool):
    """Well-formed codes (valid check character) that no longer exist."""
    vouchers = make_pool(campaign, FAILED_LOOKUPS_LIMIT + 10)
    Voucher.objects.filter(pk__in=[v.pk for v in vouchers]).delete()
    return [v.code for v in vouchers]


def fail_up_to_the_limit(api, codes):
    return [api.get(f"{VOUCHERS}/{code}").status_code for code in codes[:FAILED_LOOKUPS_LIMIT]]


@pytest.mark.django_db
def test_the_31st_unknown_code_in_a_minute_is_429(client_api, unknown_codes):
    # given
    statuses = fail_up_to_the_limit(client_api, unknown_codes)
    # when
    response = client_api.get(f"{VOUCHERS}/{unknown_codes[FAILED_LOOKUPS_LIMIT]}")
    # then
    assert statuses == [404] * FAILED_LOOKUPS_LIMIT
    assert response.status_code == 429
    assert response.json() == TOO_MANY


@pytest.mark.django_db
def test_past_the_limit_even_a_real_code_is_429_without_reading_the_database(
    client_api, campaign, make_voucher, unknown_codes
):
    # given
    voucher = make_voucher(campaign)
    fail_up_to_the_limit(client_api, unknown_codes)
    client_api.get(f"{VOUCHERS}/{voucher.code}")  # let the key's last_used_at write happen
    # when
    with CaptureQueriesContext(connection) as queries:
        lookup = client_api.get(f"{VOUCHERS}/{voucher.code}")
        redeem = client_api.post(
            f"{VOUCHERS}/{voucher.code}/redeem",
            {"amount": "1.00", "reference": "R-1"},
            format="json",
        )
        flag = client_api.post(f"{VOUCHERS}/{voucher.code}/flag", {"reason": "x"}, format="json")
    # then
    assert (lookup.status_code, redeem.status_code, flag.status_code) == (429, 429, 429)
    assert [q["sql"] for q in queries if "campaigns_" in q["sql"]] == []
    voucher.refresh_from_db()
    assert (voucher.balance, voucher.status) == (Decimal("500.00"), "active")
    assert Redemption.objects.count() == 0


@pytest.mark.django_db
def test_each_failed_lookup_is_audited_and_refusals_are_not(client_api, unknown_codes):
    # given
    fail_up_to_the_limit(client_api, unknown_codes)
    # when
    client_api.get(f"{VOUCHERS}/{unknown_codes[-1]}")
    # then
    events = AuditEvent.objects.filter(action="voucher.lookup_failed").order_by("pk")
    assert [(e.actor_client_id, e.object_type, e.changes) for e in events] == [
        (client_api.plum_client.pk, "campaigns.voucher", {"code_last4": [None, code[-4:]]})
        for code in unknown_codes[:FAILED_LOOKUPS_LIMIT]
    ]


@pytest.mark.django_db
def test_found_codes_do_not_count(client_api, campaign, make_voucher, unknown_codes):
    # given
    voucher = make_voucher(campaign)
    found = [client_api.get(f"{VOUCHERS}/{voucher.code}").status_code for _ in range(50)]
    # when
    statuses = fail_up_to_the_limit(client_api, unknown_codes)
    # then
    assert found == [200] * 50
    assert statuses == [404] * FAILED_LOOKUPS_LIMIT


@pytest.mark.django_db
def test_mistyped_codes_and_failed_redemptions_count_too(client_api, unknown_codes):
    # given
    half = FAILED_LOOKUPS_LIMIT // 2
    mistyped = [client_api.get(f"{VOUCHERS}/{code}X").status_code for code in unknown_codes[:half]]
    redeems = [
        client_api.post(
            f"{VOUCHERS}/{code}/redeem", {"amount": "1.00", "reference": "R"}, format="json"
        ).status_code
        for code in unknown_codes[half:FAILED_LOOKUPS_LIMIT]
    ]
    # when
    response = client_api.get(f"{VOUCHERS}/{unknown_codes[-1]}")
    # then
    assert mistyped == [404] * half
    assert redeems == [404] * (FAILED_LOOKUPS_LIMIT - half)
    assert response.status_code == 429


@pytest.mark.django_db
def test_the_limit_is_per_client(make_api, programme, unknown_codes):
    # given
    guesser = make_api([programme], name="Guesser")
    neighbour = make_api([programme], name="Neighbour")
    fail_up_to_the_limit(guesser, unknown_codes)
    # when
    neighbours_lookup = neighbour.get(f"{VOUCHERS}/{unknown_codes[0]}")
    guessers_lookup = guesser.get(f"{VOUCHERS}/{unknown_codes[0]}")
    # then
    assert neighbours_lookup.status_code == 404
    assert guessers_lookup.status_code == 429


@pytest.mark.django_db
def test_unknown_codes_in_a_bulk_request_count_and_a_request_past_the_limit_changes_nothing(
    client_api, campaign, make_voucher, unknown_codes, snapshot
):
    # given
    voucher = make_voucher(campaign)
    expires_at = (timezone.now() + timedelta(days=30)).isoformat()
    within = client_api.post(
        f"{VOUCHERS}/extend",
        {"codes": [voucher.code, *unknown_codes[:10]], "expires_at": expires_at},
        format="json",
    )
    before = snapshot()
    # when
    past = client_api.post(
        f"{VOUCHERS}/extend",
        {"codes": [voucher.code, *unknown_codes[10:35]], "expires_at": expires_at},
        format="json",
    )
    lookup = client_api.get(f"{VOUCHERS}/{voucher.code}")
    # then
    assert within.status_code == 200
    assert within.json()["not_found"] == unknown_codes[:10]
    assert past.status_code == 429
    assert past.json() == TOO_MANY
    assert lookup.status_code == 429
    assert snapshot() == before


@pytest.mark.django_db
def test_the_window_closes_after_a_minute(settings, monkeypatch, client_api, unknown_codes):
    # given: a private locmem cache whose clock the test moves
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "lookup-window-test",
        }
    }
    fail_up_to_the_limit(client_api, unknown_codes)
    refused = client_api.get(f"{VOUCHERS}/{unknown_codes[0]}")
    later = time.time() + FAILED_LOOKUPS_WINDOW_SECONDS + 1
    clock = type("Clock", (), {"time": staticmethod(lambda: later)})
    monkeypatch.setattr(locmem, "time", clock)
    monkeypatch.setattr(cache_base, "time", clock)
    # when
    response = client_api.get(f"{VOUCHERS}/{unknown_codes[0]}")
    # then
    assert refused.status_code == 429
    assert response.status_code == 404


CACHE_BACKENDS = {
    "locmem": lambda settings: {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "lookup-burst-test",
    },
    "redis": lambda settings: {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": settings.REDIS_URL,
        "KEY_PREFIX": "plum-burst-test",
    },
}


@pytest.mark.parametrize("backend", ["locmem", pytest.param("redis", marks=pytest.mark.redis)])
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_parallel_burst_cannot_pass_the_limit(
    settings, make_api, programme, unknown_codes, backend
):
    # given: 3 × the limit of unknown codes, from 15 threads on their own connections, released
    # at once (few enough connections to stay far below Postgres' max_connections)
    settings.CACHES = {"default": CACHE_BACKENDS[backend](settings)}
    cache.clear()
    key = make_api([programme])._credentials["HTTP_AUTHORIZATION"]
    threads_count, per_thread = 15, FAILED_LOOKUPS_LIMIT * 3 // 15
    start = threading.Barrier(threads_count)
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(codes):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=key)
        try:
            start.wait()
            for code in codes:
                status = client.get(f"{VOUCHERS}/{code}").status_code
                with lock:
                    statuses.append(status)
        finally:
            connections.close_all()

    codes = (unknown_codes * 3)[: threads_count * per_thread]
    threads = [
        threading.Thread(target=guess, args=(codes[i * per_thread : (i + 1) * per_thread],))
        for i in range(threads_count)
    ]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert sorted(statuses) == [404] * FAILED_LOOKUPS_LIMIT + [429] * (
        threads_count * per_thread - FAILED_LOOKUPS_LIMIT
    )
    assert AuditEvent.objects.filter(action="voucher.lookup_failed").count() == (
        FAILED_LOOKUPS_LIMIT
    )
