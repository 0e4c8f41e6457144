"""Every API error, wherever it arises, has the shape {"error": {"code", "message", "fields"}}."""

import json
import logging
import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from plum.api.throttling import ApiClientRateThrottle
from plum.models import AuditEvent, Member
from tests.factories import MemberFactory
from tests.plum.urls_boom import SECRET

MEMBERS = "/api/v1/members"
BOOM_URLS = "tests.plum.urls_boom"
SERVER_ERROR = {
    "error": {
        "code": "server_error",
        "message": "Something went wrong on our side; it has been logged.",
        "fields": {},
    }
}
NOT_FOUND = {"error": {"code": "not_found", "message": "No such endpoint.", "fields": {}}}


def error(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def written() -> tuple[int, int]:
    return Member.objects.count(), AuditEvent.objects.count()


def body_of_size(size: int) -> str:
    """A valid member JSON body of exactly `size` bytes."""
    empty = json.dumps({"external_id": "M-1", "name": ""}, separators=(",", ":"))
    return json.dumps(
        {"external_id": "M-1", "name": "x" * (size - len(empty))}, separators=(",", ":")
    )


# --- request bodies -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "{bad",
            "JSON parse error - Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            '{"external_id": "M-1"',
            "JSON parse error - Expecting ',' delimiter: line 1 column 22 (char 21)",
        ),
        ("M-1", "JSON parse error - Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_a_body_that_is_not_json_is_refused(client_api, body, message):
    # given
    before = written()
    # when
    response = client_api.post(MEMBERS, body, content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json() == error("malformed_json", message)
    assert written() == before


@pytest.mark.django_db
def test_a_body_in_another_media_type_is_refused(client_api):
    # given
    before = written()
    # when
    response = client_api.post(MEMBERS, "external_id=M-1", content_type="text/plain")
    # then
    assert response.status_code == 415
    assert response.json() == error(
        "unsupported_media_type", 'Unsupported media type "text/plain" in request.'
    )
    assert written() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('["M-1"]', "Invalid data. Expected a dictionary, but got list."),
        ('"M-1"', "Invalid data. Expected a dictionary, but got str."),
    ],
)
def test_a_json_body_that_is_not_an_object_is_refused(client_api, body, message):
    # given
    before = written()
    # when
    response = client_api.post(MEMBERS, body, content_type="application/json")
    # then
    assert response.status_code == 400
    assert response.json() == error("invalid", message)
    assert written() == before


@pytest.mark.django_db
@pytest.mark.parametrize("excess", [1, 5000])
def test_a_body_over_the_limit_is_refused_before_it_is_read(client_api, settings, excess):
    # given
    settings.API_MAX_BODY_BYTES = 100
    before = written()
    # when
    response = client_api.post(MEMBERS, body_of_size(100 + excess), content_type="application/json")
    # then
    assert response.status_code == 413
    assert response.json() == error(
        "payload_too_large",
        f"The request body is {100 + excess} bytes; this API accepts at most 100.",
    )
    assert written() == before


@pytest.mark.django_db
def test_a_body_at_the_limit_is_accepted(client_api, settings):
    # given
    settings.API_MAX_BODY_BYTES = 100
    # when
    response = client_api.post(MEMBERS, body_of_size(100), content_type="application/json")
    # then
    assert response.status_code == 201
    assert response.json()["name"] == "x" * 69
    assert Member.objects.count() == 1


@pytest.mark.django_db
def test_the_body_limit_applies_before_authentication(api, settings):
    # given
    settings.API_MAX_BODY_BYTES = 100
    # when
    response = api.post(MEMBERS, body_of_size(101), content_type="application/json")
    # then
    assert response.status_code == 413
    assert response.json() == error(
        "payload_too_large", "The request body is 101 bytes; this API accepts at most 100."
    )


# --- input validation -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ({"nickname": "Bo"}, {"nickname": ["Unknown field."]}),
        ({"nickname": "Bo", "id": 7}, {"id": ["Unknown field."], "nickname": ["Unknown field."]}),
        ({"user": 1}, {"user": ["Unknown field."]}),
    ],
)
def test_an_unknown_field_is_refused_and_named(client_api, extra, fields):
    # given
    before = written()
    # when
    response = client_api.post(MEMBERS, {"external_id": "M-1", **extra}, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == error("invalid", "The request has invalid fields.", fields)
    assert written() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (
            {"external_id": "M-1", "phone": "12345"},
            {"phone": ["Enter a phone number in E.164 format, e.g. +14155550123."]},
        ),
        (
            {"external_id": "M-1", "email": "not-an-email"},
            {"email": ["Enter a valid email address."]},
        ),
        (
            {"external_id": "M-1", "country": "in"},
            {"country": ["Enter an ISO 3166-1 alpha-2 country code, e.g. IN."]},
        ),
        (
            {"external_id": "M-1", "country": "IND"},
            {"country": ["Ensure this field has no more than 2 characters."]},
        ),
        (
            {"external_id": "M-1", "preferred_channel": "pigeon"},
            {"preferred_channel": ['"pigeon" is not a valid choice.']},
        ),
        ({"name": "Asha"}, {"external_id": ["This field is required."]}),
        ({"external_id": ""}, {"external_id": ["This field may not be blank."]}),
        (
            {"external_id": "M-1", "email": "a@", "country": "IND"},
            {
                "email": ["Enter a valid email address."],
                "country": ["Ensure this field has no more than 2 characters."],
            },
        ),
    ],
)
def test_an_invalid_value_is_refused_with_its_field_and_nothing_is_written(
    client_api, data, fields
):
    # given
    before = written()
    # when
    response = client_api.post(MEMBERS, data, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == error("invalid", "The request has invalid fields.", fields)
    assert written() == before


@pytest.mark.django_db
def test_an_invalid_value_leaves_an_existing_member_unchanged(client_api, programme):
    # given
    member = MemberFactory(
        programme=programme, external_id="M-1", name="Old", phone="+919800000001"
    )
    audit_before = AuditEvent.objects.count()
    # when
    response = client_api.post(
        MEMBERS, {"external_id": "M-1", "name": "New", "phone": "12345"}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json() == error(
        "invalid",
        "The request has invalid fields.",
        {"phone": ["Enter a phone number in E.164 format, e.g. +14155550123."]},
    )
    member.refresh_from_db()
    assert (member.name, member.phone) == ("Old", "+919800000001")
    assert AuditEvent.objects.count() == audit_before


# --- routing --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",
        "/api/v1/nope/",
        "/api/v2/members",
        "/api/v1/members/M-1/extra",
        "/api/v1/jobs/not-a-uuid",
        "/api/nope",
        "/api/",
    ],
)
def test_an_unknown_api_path_is_a_json_404(client_api, path):
    # when
    response = client_api.get(path)
    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_FOUND


@pytest.mark.django_db
def test_an_unknown_path_outside_the_api_stays_html(client):
    # when
    response = client.get("/nope")
    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.django_db
def test_a_missing_object_is_a_json_404(client_api):
    # when
    response = client_api.get(f"/api/v1/jobs/{uuid.UUID(int=7)}")
    # then
    assert response.status_code == 404
    assert response.json() == error("not_found", "No such job.")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["delete", "put", "patch"])
def test_a_method_the_endpoint_does_not_have_is_a_405(client_api, programme, method):
    # given
    MemberFactory(programme=programme)
    before = written()
    # when
    response = getattr(client_api, method)(MEMBERS, {}, format="json")
    # then
    assert response.status_code == 405
    assert response.json() == error("method_not_allowed", f'Method "{method.upper()}" not allowed.')
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert written() == before


@pytest.mark.django_db
def test_an_accept_header_the_api_cannot_satisfy_is_a_406(client_api):
    # when
    response = client_api.get(MEMBERS, HTTP_ACCEPT="text/html")
    # then
    assert response.status_code == 406
    assert response.json() == error(
        "not_acceptable", "Could not satisfy the request Accept header."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", [MEMBERS, f"{MEMBERS}/"])
def test_a_path_with_or_without_a_trailing_slash_is_served_without_a_redirect(
    client_api, programme, path
):
    # given
    member = MemberFactory(programme=programme)
    # when
    response = client_api.get(path)
    # then
    assert response.status_code == 200
    assert [row["external_id"] for row in response.json()["results"]] == [member.external_id]


@pytest.mark.django_db
@pytest.mark.parametrize("path", [MEMBERS, f"{MEMBERS}/"])
def test_a_post_with_or_without_a_trailing_slash_creates_the_member(client_api, path):
    # when
    response = client_api.post(path, {"external_id": "M-1"}, format="json")
    # then
    assert response.status_code == 201
    assert list(Member.objects.values_list("external_id", flat=True)) == ["M-1"]


@pytest.mark.django_db
def test_a_disallowed_host_under_the_api_is_a_json_400(client_api):
    # when
    response = client_api.get(MEMBERS, HTTP_HOST="evil.example")
    # then
    assert response.status_code == 400
    assert response.json() == error("bad_request", "The request could not be understood.")


# --- unhandled exceptions -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.urls(BOOM_URLS)
@pytest.mark.parametrize("path", ["/api/v1/boom", "/api/v1/boom-plain"])
def test_an_unhandled_exception_is_a_json_500_without_details(
    programme, make_api_client, caplog, path
):
    # given
    _, key = make_api_client([programme])
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    # when
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = api.get(path, HTTP_X_REQUEST_ID="req-500")
    # then
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response["X-Request-ID"] == "req-500"
    assert response.json() == SERVER_ERROR
    assert b"Traceback" not in response.content
    assert SECRET.encode() not in response.content
    assert [(r.levelname, r.exc_info[0]) for r in caplog.records] == [("ERROR", RuntimeError)]


@pytest.mark.django_db
@pytest.mark.urls(BOOM_URLS)
def test_an_unhandled_exception_outside_the_api_stays_html():
    # given
    client = Client(raise_request_exception=False)
    # when
    response = client.get("/boom")
    # then
    assert response.status_code == 500
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert SECRET.encode() not in response.content


@pytest.mark.django_db
@pytest.mark.urls(BOOM_URLS)
def test_a_permission_error_in_a_plain_api_view_is_a_json_403():
    # given
    client = Client(raise_request_exception=False)
    # when
    response = client.get("/api/v1/forbidden-plain")
    # then
    assert response.status_code == 403
    assert response.json() == error(
        "permission_denied", "You do not have permission to perform this action."
    )
    assert SECRET.encode() not in response.content


# --- throttling -----------------------------------------------------------------------------


@pytest.fixture
def throttle_rate(settings, monkeypatch):
    """Tightens the API rate to 2/min on a frozen clock, in a cache namespace of its own (the
    Redis cache is shared with other processes: no flush)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_client": "2/min"},
    }
    clock = {"now": 1_700_000_000.0}
    monkeypatch.setattr(ApiClientRateThrottle, "timer", staticmethod(lambda: clock["now"]))
    return clock


@pytest.mark.django_db
def test_a_client_over_its_rate_is_throttled(client_api, throttle_rate):
    # given
    assert [client_api.get(MEMBERS).status_code for _ in range(2)] == [200, 200]
    # when
    response = client_api.get(MEMBERS)
    # then
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert response.json() == error(
        "throttled", "Request was throttled. Expected available in 60 seconds."
    )


@pytest.mark.django_db
def test_a_throttled_post_creates_nothing(client_api, throttle_rate):
    # given
    client_api.get(MEMBERS)
    client_api.get(MEMBERS)
    before = written()
    # when
    response = client_api.post(MEMBERS, {"external_id": "M-1"}, format="json")
    # then
    assert response.status_code == 429
    assert written() == before


@pytest.mark.django_db
def test_a_throttled_client_is_let_through_once_the_window_has_passed(client_api, throttle_rate):
    # given
    client_api.get(MEMBERS)
    client_api.get(MEMBERS)
    throttle_rate["now"] += 20
    assert client_api.get(MEMBERS)["Retry-After"] == "40"
    # when
    throttle_rate["now"] += 40
    response = client_api.get(MEMBERS)
    # then
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_rate_is_counted_per_client(client_api, programme, make_api_client, throttle_rate):
    # given
    client_api.get(MEMBERS)
    client_api.get(MEMBERS)
    _, other_key = make_api_client([programme], name="Other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    # when
    responses = [client_api.get(MEMBERS), other.get(MEMBERS)]
    # then
    assert [r.status_code for r in responses] == [429, 200]
