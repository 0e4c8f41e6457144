"""Who may call the API: API keys (Bearer), their scopes, and staff sessions."""

import uuid

import pytest
from rest_framework.test import APIClient

from plum.actors import SYSTEM
from plum.models import ApiClient, AuditEvent, Member
from plum.roles import PROGRAMME_MANAGER
from plum.services.api_clients import api_client_revoke
from tests.factories import MemberFactory, UserFactory

MEMBERS = "/api/v1/members"
WWW_AUTHENTICATE = 'Bearer realm="api"'
UNKNOWN_KEY = "plum_live_" + "A" * 43
NOT_AUTHENTICATED = {
    "error": {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "fields": {},
    }
}
MALFORMED_HEADER = {
    "error": {
        "code": "invalid_api_key",
        "message": "Malformed Authorization header: expected 'Bearer <key>'.",
        "fields": {},
    }
}
INVALID_KEY = {
    "error": {"code": "invalid_api_key", "message": "Unknown or revoked API key.", "fields": {}}
}
NOT_STAFF = {
    "error": {
        "code": "permission_denied",
        "message": "You do not have permission to perform this action.",
        "fields": {},
    }
}


def lacks_scope(scope: str) -> dict:
    return {
        "error": {
            "code": "permission_denied",
            "message": f"This API key lacks the scope this endpoint needs: {scope}.",
            "fields": {},
        }
    }


def api_with(authorization: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=authorization)
    return api


def nothing_written() -> tuple[int, int]:
    return Member.objects.count(), AuditEvent.objects.count()


# --- no credentials -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/programmes",
        "/api/v1/members",
        "/api/v1/members/",
        "/api/v1/members/M-00001",
        f"/api/v1/jobs/{uuid.UUID(int=1)}",
    ],
)
def test_every_endpoint_refuses_a_request_without_credentials(api, programme, path):
    # given
    MemberFactory(programme=programme, external_id="M-00001")
    # when
    response = api.get(path)
    # then
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.django_db
def test_a_post_without_credentials_creates_nothing(api, programme):
    # given
    before = nothing_written()
    # when
    response = api.post(MEMBERS, {"external_id": "M-1"}, format="json")
    # then
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert nothing_written() == before


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["", " ", "\t  "])
def test_an_empty_authorization_header_counts_as_no_credentials(programme, header):
    # given
    api = api_with(header)
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


# --- malformed and foreign schemes ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "Bearer notakey",
        "Bearer plum_live_short",
        "Bearer plum_prod_" + "A" * 43,
        "Bearer {key} extra",
        "Bearer {key}\x00",
    ],
)
def test_a_malformed_bearer_header_is_refused_as_an_invalid_key(programme, make_api_client, header):
    # given
    _, key = make_api_client([programme])
    api = api_with(header.format(key=key))
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 401
    assert response.json() == MALFORMED_HEADER
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Token xyz", "Basic dXNlcjpwYXNz", "Token {key}", "{key}"])
def test_another_scheme_is_not_an_api_key_and_leaves_the_caller_anonymous(
    programme, make_api_client, header
):
    # given: even a valid key is not accepted outside the Bearer scheme
    _, key = make_api_client([programme])
    api = api_with(header.format(key=key))
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.django_db
def test_another_scheme_does_not_hide_a_staff_session(programme, make_user):
    # given: a proxy in front of the site adds its own Basic credentials to the browser's calls
    member = MemberFactory(programme=programme)
    api = api_with("Basic dXNlcjpwYXNz")
    api.force_login(make_user(PROGRAMME_MANAGER, programme))
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 200
    assert [row["external_id"] for row in response.json()["results"]] == [member.external_id]


# --- unknown, revoked and valid keys --------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_well_formed_key_is_refused(programme, make_api_client):
    # given
    make_api_client([programme])
    api = api_with(f"Bearer {UNKNOWN_KEY}")
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 401
    assert response.json() == INVALID_KEY
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.django_db
def test_a_revoked_key_stops_working(programme, make_api_client):
    # given
    client, key = make_api_client([programme])
    api = api_with(f"Bearer {key}")
    assert api.get(MEMBERS).status_code == 200
    api_client_revoke(client=client, actor=SYSTEM)
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 401
    assert response.json() == INVALID_KEY
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.django_db
def test_a_revoked_key_and_an_unknown_key_get_the_same_answer(programme, make_api_client):
    # given
    client, revoked_key = make_api_client([programme])
    api_client_revoke(client=client, actor=SYSTEM)
    # when
    revoked = api_with(f"Bearer {revoked_key}").get(MEMBERS)
    unknown = api_with(f"Bearer {UNKNOWN_KEY}").get(MEMBERS)
    # then
    assert (revoked.status_code, revoked.content) == (unknown.status_code, unknown.content)
    assert revoked["WWW-Authenticate"] == unknown["WWW-Authenticate"]
    assert revoked["Content-Type"] == unknown["Content-Type"]


@pytest.mark.django_db
def test_a_revoked_key_cannot_write(programme, make_api_client):
    # given
    client, key = make_api_client([programme])
    api_client_revoke(client=client, actor=SYSTEM)
    before = nothing_written()
    # when
    response = api_with(f"Bearer {key}").post(MEMBERS, {"external_id": "M-1"}, format="json")
    # then
    assert response.status_code == 401
    assert response.json() == INVALID_KEY
    assert nothing_written() == before


@pytest.mark.django_db
@pytest.mark.parametrize("is_test", [False, True])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_valid_key_authenticates(programme, make_api_client, is_test, scheme):
    # given
    member = MemberFactory(programme=programme)
    client, key = make_api_client([programme], is_test=is_test)
    # when
    response = api_with(f"{scheme}  {key}").get(MEMBERS)
    # then
    assert response.status_code == 200
    assert [row["external_id"] for row in response.json()["results"]] == [member.external_id]
    client.refresh_from_db()
    assert client.last_used_at is not None


# --- scopes ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("scopes", "method", "needed"),
    [
        (["issue"], "get", "read"),
        (["issue", "redeem", "support", "manage"], "get", "read"),
        ([], "get", "read"),
        (["issue"], "options", "read"),
        (["read"], "delete", "manage"),
    ],
)
def test_a_key_without_the_needed_scope_is_refused(
    programme, make_api_client, scopes, method, needed
):
    # given
    MemberFactory(programme=programme)
    _, key = make_api_client([programme], scopes=scopes)
    # when
    response = getattr(api_with(f"Bearer {key}"), method)(MEMBERS)
    # then
    assert response.status_code == 403
    assert response.json() == lacks_scope(needed)


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [["read"], ["read", "issue", "redeem", "support"], []])
def test_a_key_without_the_manage_scope_cannot_create_a_member(programme, make_api_client, scopes):
    # given
    _, key = make_api_client([programme], scopes=scopes)
    before = nothing_written()
    # when
    response = api_with(f"Bearer {key}").post(MEMBERS, {"external_id": "M-1"}, format="json")
    # then
    assert response.status_code == 403
    assert response.json() == lacks_scope("manage")
    assert nothing_written() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("scopes", "status"), [(["read"], 200), (["issue"], 403)])
def test_head_needs_what_get_needs(programme, make_api_client, scopes, status):
    # given
    _, key = make_api_client([programme], scopes=scopes)
    # when
    response = api_with(f"Bearer {key}").head(MEMBERS)
    # then
    assert response.status_code == status
    assert response.content == b""


@pytest.mark.django_db
def test_a_read_only_key_may_ask_for_the_endpoints_options(programme, make_api_client):
    # given
    _, key = make_api_client([programme], scopes=["read"])
    # when
    response = api_with(f"Bearer {key}").options(MEMBERS)
    # then
    assert response.status_code == 200
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"


@pytest.mark.django_db
def test_a_key_with_the_manage_scope_creates_a_member(programme, make_api_client):
    # given
    client, key = make_api_client([programme], scopes=["manage"])
    # when
    response = api_with(f"Bearer {key}").post(MEMBERS, {"external_id": "M-1"}, format="json")
    # then
    assert response.status_code == 201
    assert list(Member.objects.values_list("programme__slug", "external_id")) == [("alpha", "M-1")]
    assert list(
        AuditEvent.objects.filter(action="member.create").values_list(
            "actor_type", "actor_client_id"
        )
    ) == [("api_client", client.pk)]


# --- a key sees only its own programmes -----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("external_id", ["M-ALPHA", "M-NOWHERE"])
def test_a_member_of_another_programme_looks_like_a_missing_one(
    programme, other_programme, make_api_client, external_id
):
    # given
    MemberFactory(programme=programme, external_id="M-ALPHA")
    _, key = make_api_client([other_programme])
    # when
    response = api_with(f"Bearer {key}").get(f"{MEMBERS}/{external_id}")
    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No such member.", "fields": {}}
    }


# --- sessions -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_staff_session_reads_its_programmes_members(programme, other_programme, make_user):
    # given
    mine = MemberFactory(programme=programme)
    MemberFactory(programme=other_programme)
    api = APIClient()
    api.force_login(make_user(PROGRAMME_MANAGER, programme))
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 200
    assert [row["external_id"] for row in response.json()["results"]] == [mine.external_id]


@pytest.mark.django_db
def test_a_session_of_a_user_who_is_not_staff_is_refused(programme):
    # given
    MemberFactory(programme=programme)
    api = APIClient()
    api.force_login(UserFactory())
    # when
    response = api.get(MEMBERS)
    # then
    assert response.status_code == 403
    assert response.json() == NOT_STAFF


@pytest.mark.django_db
def test_a_session_post_without_a_csrf_token_is_refused(programme, make_user):
    # given
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(make_user(PROGRAMME_MANAGER, programme))
    before = nothing_written()
    # when
    response = api.post(MEMBERS, {"external_id": "M-1", "programme": "alpha"}, format="json")
    # then
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "permission_denied",
            "message": "CSRF Failed: CSRF cookie not set.",
            "fields": {},
        }
    }
    assert nothing_written() == before


@pytest.mark.django_db
def test_api_keys_are_kept_only_as_a_hash(programme, make_api_client):
    # given
    client, key = make_api_client([programme])
    # when
    stored = ApiClient.objects.filter(pk=client.pk).values().get()
    # then
    assert key not in {str(value) for value in stored.values()}
    assert stored["key_prefix"] == key[:14]
