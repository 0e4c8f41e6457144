"""manage.py create_api_client: the only way an operator gets an API key."""

import io
import re

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from plum.models import ApiClient, AuditEvent
from plum.services.api_clients import hash_key

ALL_SCOPES = ["issue", "manage", "read", "redeem", "support"]


def create_api_client(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("create_api_client", *args, stdout=out)
    return out.getvalue().splitlines()


def written() -> tuple[int, int]:
    return ApiClient.objects.count(), AuditEvent.objects.count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("flags", "prefix", "is_test"), [([], "plum_live_", False), (["--test"], "plum_test_", True)]
)
def test_the_key_is_printed_alone_on_the_last_line(programme, flags, prefix, is_test):
    # when
    lines = create_api_client("--programme", "alpha", "--name", "POS", *flags)
    # then
    key = lines[-1]
    assert re.fullmatch(rf"{prefix}[A-Za-z0-9_\-]{{43}}", key)
    client = ApiClient.objects.get()
    assert client.key_hash == hash_key(key)
    assert (client.name, client.is_test) == ("POS", is_test)


@pytest.mark.django_db
def test_the_printed_key_authenticates(programme):
    # given
    key = create_api_client("--programme", "alpha", "--name", "POS")[-1]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    # when
    response = api.get("/api/v1/programmes")
    # then
    assert response.status_code == 200
    assert [row["slug"] for row in response.json()["results"]] == ["alpha"]


@pytest.mark.django_db
def test_the_key_holds_every_scope_by_default(programme):
    # when
    lines = create_api_client("--programme", "alpha", "--name", "POS")
    # then
    client = ApiClient.objects.get()
    assert client.scopes == ALL_SCOPES
    assert lines[0] == (
        f"Created live API client 'POS' (id {client.pk}) for alpha with scopes "
        "issue,manage,read,redeem,support."
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        ("read,issue", ["issue", "read"]),
        ("read", ["read"]),
        (" read , issue ,read", ["issue", "read"]),
    ],
)
def test_the_key_holds_the_scopes_asked_for(programme, scopes, expected):
    # when
    create_api_client("--programme", "alpha", "--name", "POS", "--scopes", scopes)
    # then
    assert ApiClient.objects.get().scopes == expected


@pytest.mark.django_db
def test_a_key_may_be_bound_to_several_programmes(programme, other_programme):
    # when
    create_api_client("--programme", "alpha", "--programme", "beta", "--name", "CRM")
    # then
    client = ApiClient.objects.get()
    assert sorted(client.programmes.values_list("slug", flat=True)) == ["alpha", "beta"]


@pytest.mark.django_db
def test_the_creation_is_audited_without_the_key(programme):
    # when
    key = create_api_client("--programme", "alpha", "--name", "POS")[-1]
    # then
    client = ApiClient.objects.get()
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_type, event.actor_label) == (
        "api_client.create",
        "system",
        "manage.py create_api_client",
    )
    assert (event.object_id, event.programme_id) == (str(client.pk), programme.pk)
    assert key not in str(event.changes)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("slugs", "message"),
    [
        (["nope"], "No programme with slug: nope"),
        (["alpha", "nope", "gone"], "No programme with slug: gone, nope"),
    ],
)
def test_an_unknown_programme_creates_nothing(programme, slugs, message):
    # given
    before = written()
    args = [arg for slug in slugs for arg in ("--programme", slug)]
    # when
    with pytest.raises(CommandError) as raised:
        create_api_client(*args, "--name", "POS")
    # then
    assert str(raised.value) == message
    assert written() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("scopes", "unknown"),
    [("read,admin", "admin"), ("write", "write"), ("READ", "READ"), ("sudo,read,all", "all, sudo")],
)
def test_an_unknown_scope_creates_nothing(programme, scopes, unknown):
    # given
    before = written()
    # when
    with pytest.raises(CommandError) as raised:
        create_api_client("--programme", "alpha", "--name", "POS", "--scopes", scopes)
    # then
    assert str(raised.value) == (
        f"Unknown scopes: {unknown}. "
        "{'scopes': ['Choose from read, issue, redeem, manage, support.']}"
    )
    assert written() == before


@pytest.mark.django_db
def test_a_blank_name_creates_nothing(programme):
    # given
    before = written()
    # when
    with pytest.raises(CommandError) as raised:
        create_api_client("--programme", "alpha", "--name", "  ")
    # then
    assert str(raised.value) == (
        "The request has invalid fields. {'name': ['A client needs a name.']}"
    )
    assert written() == before
