"""Idempotency-Key on external POSTs (ARCHITECTURE.md, "Idempotency"): the same key and body
replay the first response, another body is 422, a key still in flight is 409, keys are scoped
to the API client and kept for at least the TTL."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

import plum.api.views
from plum import context
from plum.models import AuditEvent, IdempotencyKey, Member
from plum.services.idempotency import (
    idempotency_begin,
    idempotency_complete,
    idempotency_purge,
    idempotency_release,
    request_fingerprint,
)

URL = "/api/v1/members"
BODY = {"external_id": "EMP-001", "name": "Asha Rao", "email": "asha@example.com"}


def api_for(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def post(api: APIClient, body: dict, key: str):
    return api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def state() -> dict:
    """Everything a POST /members could change."""
    return {
        "members": list(Member.objects.order_by("pk").values()),
        "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", "action")),
        "keys": list(
            IdempotencyKey.objects.order_by("pk").values(
                "pk", "client_id", "key", "fingerprint", "state", "response_status"
            )
        ),
    }


def member_events():
    return AuditEvent.objects.filter(action__startswith="member.")


# replay ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_response_byte_for_byte(client_api):
    # given
    first = post(client_api, BODY, "key-1")
    before = state()
    # when
    replay = post(client_api, BODY, "key-1")
    # then
    assert first.status_code == 201
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay["Content-Type"] == first["Content-Type"] == "application/json"
    assert replay["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert state() == before
    assert Member.objects.count() == 1
    assert member_events().count() == 1


@pytest.mark.django_db
def test_replay_returns_the_first_response_even_after_the_member_changed(client_api):
    # given
    first = post(client_api, BODY, "key-1")
    client_api.post(URL, {**BODY, "name": "Renamed"}, format="json")
    # when
    replay = post(client_api, BODY, "key-1")
    # then
    assert replay.status_code == 201
    assert replay.content == first.content
    assert json.loads(replay.content)["name"] == "Asha Rao"
    assert Member.objects.get().name == "Renamed"


@pytest.mark.django_db
def test_an_update_response_is_replayed_too(client_api):
    # given
    post(client_api, BODY, "key-create")
    update = post(client_api, {**BODY, "name": "Asha R."}, "key-update")
    # when
    replay = post(client_api, {**BODY, "name": "Asha R."}, "key-update")
    # then
    assert (update.status_code, replay.status_code) == (200, 200)
    assert replay.content == update.content
    assert list(member_events().order_by("id").values_list("action", flat=True)) == [
        "member.create",
        "member.update",
    ]


@pytest.mark.django_db
def test_a_client_error_response_is_stored_and_replayed(client_api):
    # given
    first = post(client_api, {"external_id": "E-1", "phone": "nope"}, "key-bad")
    # when
    replay = post(client_api, {"external_id": "E-1", "phone": "nope"}, "key-bad")
    # then
    assert first.status_code == 400
    assert replay.status_code == 400
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert Member.objects.count() == 0


@pytest.mark.django_db
def test_the_stored_key_holds_the_response(client_api):
    # when
    response = post(client_api, BODY, "key-1")
    # then
    record = IdempotencyKey.objects.get()
    assert (record.client_id, record.key, record.state, record.response_status) == (
        client_api.plum_client.pk,
        "key-1",
        "complete",
        201,
    )
    assert bytes(record.response_body) == response.content
    assert record.response_content_type == "application/json"
    assert record.completed_at is not None


# reuse with another request ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "other_body",
    [
        {**BODY, "name": "Someone else"},
        {"external_id": "EMP-002"},
        {**BODY, "email": "other@example.com"},
    ],
)
def test_same_key_with_another_body_is_422_and_changes_nothing(client_api, other_body):
    # given
    post(client_api, BODY, "key-1")
    before = state()
    # when
    response = post(client_api, other_body, "key-1")
    # then
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "idempotency_key_reused",
            "message": "This Idempotency-Key was already used with a different request.",
            "fields": {},
        }
    }
    assert state() == before


@pytest.mark.django_db
def test_same_key_with_same_json_in_another_byte_layout_is_422(client_api):
    # given: the fingerprint is over the bytes sent; a key belongs to one exact request
    post(client_api, BODY, "key-1")
    before = state()
    # when
    response = client_api.post(
        URL,
        json.dumps(BODY, indent=2),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    # then
    assert response.status_code == 422
    assert state() == before


@pytest.mark.django_db
def test_same_key_and_body_with_another_query_string_is_422(client_api):
    # given
    post(client_api, BODY, "key-1")
    before = state()
    # when
    response = client_api.post(
        f"{URL}?programme=alpha", BODY, format="json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    # then
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert state() == before


# scope ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_keys_are_scoped_to_the_api_client(client_api, make_api_client, programme):
    # given
    post(client_api, BODY, "shared-key")
    _, other_key = make_api_client([programme], name="Other client")
    other = api_for(other_key)
    # when
    response = post(other, {"external_id": "EMP-002"}, "shared-key")
    # then
    assert response.status_code == 201
    assert not response.has_header("Idempotent-Replayed")
    assert sorted(Member.objects.values_list("external_id", flat=True)) == ["EMP-001", "EMP-002"]
    assert IdempotencyKey.objects.filter(key="shared-key").count() == 2


@pytest.mark.django_db
def test_another_client_with_the_same_key_and_body_does_not_get_the_first_replay(
    client_api, make_api_client, programme
):
    # given
    first = post(client_api, BODY, "shared-key")
    _, other_key = make_api_client([programme], name="Other client")
    # when
    response = post(api_for(other_key), BODY, "shared-key")
    # then
    assert (first.status_code, response.status_code) == (201, 200)
    assert not response.has_header("Idempotent-Replayed")
    assert Member.objects.count() == 1


@pytest.mark.django_db
def test_a_post_without_a_key_is_not_recorded(client_api):
    # when
    first = client_api.post(URL, BODY, format="json")
    second = client_api.post(URL, BODY, format="json")
    # then
    assert (first.status_code, second.status_code) == (201, 200)
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.django_db
def test_a_get_with_a_key_is_not_recorded(client_api):
    # when
    response = client_api.get(URL, HTTP_IDEMPOTENCY_KEY="key-1")
    # then
    assert response.status_code == 200
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.django_db
def test_a_refused_request_does_not_claim_the_key(make_api_client, programme):
    # given: no manage scope, so the POST is refused before the key is claimed
    _, key = make_api_client([programme], scopes=["read"])
    # when
    response = post(api_for(key), BODY, "key-1")
    # then
    assert response.status_code == 403
    assert IdempotencyKey.objects.count() == 0


# invalid keys ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="too-long"),
        pytest.param("clé-1", id="non-ascii"),
        pytest.param("\u20ac", id="euro-sign"),
        pytest.param("two words", id="space"),
        pytest.param("tab\tkey", id="control-character"),
    ],
)
def test_an_invalid_key_is_400_and_changes_nothing(client_api, key):
    # given
    before = state()
    # when
    response = post(client_api, BODY, key)
    # then
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_idempotency_key",
            "message": "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
            "fields": {},
        }
    }
    assert state() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k", id="one-character"),
        pytest.param("k" * 255, id="255-characters"),
        pytest.param("7f9c2ba4-e88f-4a2b-9c1e-2b8f3f1d6a10", id="uuid"),
        pytest.param("!#$%&'*+-.^_`|~", id="punctuation"),
    ],
)
def test_a_valid_key_is_accepted(client_api, key):
    # when
    response = post(client_api, BODY, key)
    # then
    assert response.status_code == 201
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == [key]


# in flight ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_key_held_in_flight_is_409_and_changes_nothing(client_api):
    # given: another request claimed the key for this exact body and is still running
    body = json.dumps(BODY).encode()
    idempotency_begin(
        client=client_api.plum_client,
        key="key-1",
        fingerprint=request_fingerprint(method="POST", path=URL, body=body),
    )
    before = state()
    # when
    response = client_api.post(
        URL, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    # then
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "idempotency_key_in_use",
            "message": (
                "A request with this Idempotency-Key is still being processed; retry later."
            ),
            "fields": {},
        }
    }
    assert state() == before


@pytest.mark.django_db
def test_a_key_abandoned_in_flight_is_taken_over(client_api, settings):
    # given: a request claimed the key and died without releasing it
    body = json.dumps(BODY).encode()
    record = idempotency_begin(
        client=client_api.plum_client,
        key="key-1",
        fingerprint=request_fingerprint(method="POST", path=URL, body=body),
    )
    IdempotencyKey.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT - timedelta(seconds=1)
    )
    # when
    response = client_api.post(
        URL, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    # then
    assert response.status_code == 201
    assert Member.objects.count() == 1
    assert list(IdempotencyKey.objects.values_list("pk", "state", "response_status")) == [
        (record.pk, "complete", 201)
    ]


# server errors -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_server_error_frees_the_key_for_a_retry(client_api, monkeypatch):
    # given
    def broken_upsert(**kwargs):
        raise RuntimeError("database fell over")

    monkeypatch.setattr(plum.api.views, "member_upsert", broken_upsert)
    client_api.raise_request_exception = False
    failed = post(client_api, BODY, "key-1")
    monkeypatch.undo()
    # when
    retry = post(client_api, BODY, "key-1")
    # then
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "server_error"
    assert retry.status_code == 201
    assert not retry.has_header("Idempotent-Replayed")
    assert Member.objects.count() == 1
    assert list(IdempotencyKey.objects.values_list("key", "state", "response_status")) == [
        ("key-1", "complete", 201)
    ]


@pytest.mark.django_db
def test_a_server_error_leaves_no_key_behind(client_api, monkeypatch):
    # given
    def broken_upsert(**kwargs):
        raise RuntimeError("database fell over")

    monkeypatch.setattr(plum.api.views, "member_upsert", broken_upsert)
    client_api.raise_request_exception = False
    # when
    response = post(client_api, BODY, "key-1")
    # then
    assert response.status_code == 500
    assert IdempotencyKey.objects.count() == 0
    assert Member.objects.count() == 0


@pytest.mark.django_db
def test_a_server_error_after_the_change_committed_keeps_the_key_so_no_retry_applies_it_again(
    client_api, monkeypatch, settings
):
    # given: the member is written (and audited), then rendering the answer fails
    class LostResponse:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("connection dropped after the commit")

    monkeypatch.setattr(plum.api.views, "MemberOutput", LostResponse)
    client_api.raise_request_exception = False
    failed = post(client_api, BODY, "key-1")
    monkeypatch.undo()
    # when: the client retries at once, and again after the in-flight timeout
    soon = post(client_api, BODY, "key-1")
    IdempotencyKey.objects.update(
        created_at=timezone.now() - settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT - timedelta(seconds=1)
    )
    late = post(client_api, BODY, "key-1")
    # then: the key is never freed nor taken over; the change happened once
    assert failed.status_code == 500
    assert (soon.status_code, soon.json()["error"]["code"]) == (409, "idempotency_key_in_use")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "idempotency_key_applied")
    assert Member.objects.count() == 1
    assert list(IdempotencyKey.objects.values_list("key", "state")) == [("key-1", "in_flight")]


@pytest.mark.django_db
def test_another_clients_request_with_the_same_request_id_does_not_mark_a_key_applied(
    client_api, programme, make_api_client, monkeypatch
):
    # given: a failing request of client A and a succeeding one of client B, both sent with
    # the caller-chosen X-Request-ID "trace-1"
    _, key_b = make_api_client([programme], name="B")
    real_upsert = plum.api.views.member_upsert
    answers = {}

    def broken_upsert(**kwargs):
        # B's request runs (and audits) while A's is still in flight, then A fails
        monkeypatch.setattr(plum.api.views, "member_upsert", real_upsert)
        answers["other"] = api_for(key_b).post(
            URL,
            {**BODY, "external_id": "EMP-002"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="key-b",
            HTTP_X_REQUEST_ID="trace-1",
        )
        raise RuntimeError("database fell over")

    client_api.raise_request_exception = False
    monkeypatch.setattr(plum.api.views, "member_upsert", broken_upsert)
    failed = client_api.post(
        URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="key-a", HTTP_X_REQUEST_ID="trace-1"
    )
    monkeypatch.undo()
    other = answers["other"]
    # when: A retries
    retry = client_api.post(URL, BODY, format="json", HTTP_IDEMPOTENCY_KEY="key-a")
    # then: B's audit events did not make A's key look applied; the retry did the work once
    assert (failed.status_code, other.status_code, retry.status_code) == (500, 201, 201)
    assert Member.objects.filter(external_id="EMP-001").count() == 1


@pytest.mark.django_db
def test_a_request_taken_over_after_the_timeout_cannot_free_or_complete_its_successors_key(
    client_api, settings
):
    # given: request 1 claims the key, stalls past the in-flight timeout, request 2 takes it over
    client = client_api.plum_client
    token = context.bind(context.RequestContext(request_id="req-1"))
    try:
        first = idempotency_begin(client=client, key="k", fingerprint="f" * 64)
    finally:
        context.reset(token)
    IdempotencyKey.objects.update(
        created_at=timezone.now() - settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT - timedelta(seconds=1)
    )
    token = context.bind(context.RequestContext(request_id="req-2"))
    try:
        second = idempotency_begin(client=client, key="k", fingerprint="f" * 64)
    finally:
        context.reset(token)
    # when: the stalled request 1 finally fails, or finally answers
    idempotency_release(record=first)
    stored = idempotency_complete(record=first, status=201, body=b"{}", content_type="x")
    # then: request 2 still owns the key, in flight, and request 3 is told it is in use
    assert stored == 0
    assert list(IdempotencyKey.objects.values_list("request_id", "state")) == [
        ("req-2", "in_flight")
    ]
    assert second.request_id == "req-2"


# purge ---------------------------------------------------------------------------------------


def _key_aged(client, key: str, age: timedelta) -> IdempotencyKey:
    record = IdempotencyKey.objects.create(client=client, key=key, fingerprint="f" * 64)
    IdempotencyKey.objects.filter(pk=record.pk).update(created_at=timezone.now() - age)
    return record


@pytest.mark.django_db
def test_purge_removes_keys_older_than_the_ttl_and_keeps_newer_ones(client_api, settings):
    # given
    client = client_api.plum_client
    ttl = settings.IDEMPOTENCY_KEY_TTL
    _key_aged(client, "old", ttl + timedelta(minutes=1))
    _key_aged(client, "older", ttl * 3)
    _key_aged(client, "young", ttl - timedelta(minutes=1))
    _key_aged(client, "fresh", timedelta(0))
    # when
    deleted = idempotency_purge()
    # then
    assert deleted == 2
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh", "young"]


@pytest.mark.django_db
def test_the_ttl_is_at_least_24_hours(settings):
    # then
    assert timedelta(hours=24) <= settings.IDEMPOTENCY_KEY_TTL


@pytest.mark.django_db
def test_purge_with_an_explicit_age(client_api):
    # given
    client = client_api.plum_client
    _key_aged(client, "two-hours", timedelta(hours=2))
    _key_aged(client, "half-hour", timedelta(minutes=30))
    # when
    deleted = idempotency_purge(older_than=timedelta(hours=1))
    # then
    assert deleted == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["half-hour"]


@pytest.mark.django_db
def test_a_purged_key_may_be_used_again(client_api):
    # given
    post(client_api, BODY, "key-1")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=2))
    idempotency_purge()
    # when
    response = post(client_api, {**BODY, "name": "Second use"}, "key-1")
    # then
    assert response.status_code == 200
    assert not response.has_header("Idempotent-Replayed")
    assert Member.objects.get().name == "Second use"


# concurrency on Postgres -------------------------------------------------------------------------


def _post_in_thread(key: str, body: dict, idempotency_key: str, results: list, barrier):
    """One request on its own connection, started when every thread at `barrier` is ready."""
    try:
        api = api_for(key)
        barrier.wait(timeout=30)
        results.append(post(api, body, idempotency_key))
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_in_flight_answers_409_to_a_concurrent_request(
    programme, make_api_client, monkeypatch
):
    # given: request 1 holds the key and is stopped inside the service
    _, key = make_api_client([programme])
    inside, release = threading.Event(), threading.Event()
    real_upsert = plum.api.views.member_upsert

    def blocking_upsert(**kwargs):
        inside.set()
        release.wait(timeout=30)
        return real_upsert(**kwargs)

    monkeypatch.setattr(plum.api.views, "member_upsert", blocking_upsert)
    first_results: list = []
    first = threading.Thread(
        target=_post_in_thread, args=(key, BODY, "key-1", first_results, threading.Barrier(1))
    )
    first.start()
    try:
        assert inside.wait(timeout=30)
        # when
        second = post(api_for(key), BODY, "key-1")
    finally:
        release.set()
        first.join(timeout=30)
    retry = post(api_for(key), BODY, "key-1")
    # then
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_in_use"
    assert [r.status_code for r in first_results] == [201]
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first_results[0].content
    assert Member.objects.count() == 1
    assert member_events().count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_requests_with_one_key_create_one_member(programme, make_api_client):
    # given
    _, key = make_api_client([programme])
    results: list = []
    barrier = threading.Barrier(20)
    threads = [
        threading.Thread(target=_post_in_thread, args=(key, BODY, "key-1", results, barrier))
        for _ in range(20)
    ]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then
    outcomes = [
        (r.status_code, r.get("Idempotent-Replayed"), r.json().get("error", {}).get("code"))
        for r in results
    ]
    created = [o for o in outcomes if o == (201, None, None)]
    others = [o for o in outcomes if o != (201, None, None)]
    assert len(results) == 20
    assert len(created) == 1
    assert len(others) == 19
    assert set(others) <= {(201, "true", None), (409, None, "idempotency_key_in_use")}
    assert Member.objects.count() == 1
    assert member_events().count() == 1
    assert list(IdempotencyKey.objects.values_list("key", "state", "response_status")) == [
        ("key-1", "complete", 201)
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_requests_with_distinct_keys_upsert_one_member(programme, make_api_client):
    # given: without a shared key the unique (programme, external_id) still decides
    _, key = make_api_client([programme])
    results: list = []
    barrier = threading.Barrier(20)
    threads = [
        threading.Thread(target=_post_in_thread, args=(key, BODY, f"key-{n}", results, barrier))
        for n in range(20)
    ]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then
    assert sorted(r.status_code for r in results) == [200] * 19 + [201]
    assert Member.objects.count() == 1
    assert list(member_events().values_list("action", flat=True)) == ["member.create"]
    assert IdempotencyKey.objects.filter(state="complete").count() == 20
