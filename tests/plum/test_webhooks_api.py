"""/api/v1/webhooks: an API client with the manage scope manages its own endpoints; the secret
is in the create and rotate responses only; others' endpoints are 404; bad input changes
nothing."""

import pytest
from rest_framework.test import APIClient

from plum import secretbox
from plum.models import AuditEvent, WebhookEndpoint

URL = "/api/v1/webhooks"
BODY = {"url": "https://crm.example.com/plum", "event_types": ["order.completed", "*"]}


def api_for(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


@pytest.fixture
def owner(programme, make_api_client):
    client, key = make_api_client([programme], name="CRM")
    return client, api_for(key)


def create(api, body=BODY):
    return api.post(URL, body, format="json")


@pytest.mark.django_db
def test_create_returns_the_secret_once_and_reads_never_show_it(owner):
    client, api = owner
    # when
    created = create(api)
    listed = api.get(URL)
    one = api.get(f"{URL}/{created.json()['id']}")
    # then
    assert created.status_code == 201
    body = created.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["secret"].startswith("whsec_")
    assert secretbox.decrypt(endpoint.secret_encrypted) == body["secret"]
    assert (body["url"], body["event_types"], body["is_active"]) == (
        BODY["url"],
        ["*", "order.completed"],
        True,
    )
    assert endpoint.client == client
    assert "secret" not in listed.json()["results"][0]
    assert "secret" not in one.json()
    assert body["secret"] not in listed.content.decode() + one.content.decode()
    assert AuditEvent.objects.filter(action="webhook.endpoint.create").count() == 1


@pytest.mark.django_db
def test_patch_delete_and_rotate(owner):
    _, api = owner
    endpoint_id = create(api).json()["id"]
    first_secret = secretbox.decrypt(WebhookEndpoint.objects.get().secret_encrypted)
    # when
    patched = api.patch(
        f"{URL}/{endpoint_id}", {"event_types": ["voucher.redeemed"]}, format="json"
    )
    rotated = api.post(f"{URL}/{endpoint_id}/rotate-secret")
    deleted = api.delete(f"{URL}/{endpoint_id}")
    # then
    endpoint = WebhookEndpoint.objects.get()
    assert patched.status_code == 200 and patched.json()["event_types"] == ["voucher.redeemed"]
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != first_secret
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert secretbox.decrypt(endpoint.previous_secret_encrypted) == first_secret
    assert deleted.status_code == 204
    assert endpoint.is_active is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://crm.example.com/x", "event_types": ["*"]}, "url"),
        ({"url": "https://192.168.1.5/x", "event_types": ["*"]}, "url"),
        ({"url": "https://crm.example.com/x", "event_types": ["order.teleported"]}, "event_types"),
        ({"url": "https://crm.example.com/x", "event_types": []}, "event_types"),
        ({"url": "https://crm.example.com/x", "event_types": ["*"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_input_is_a_specific_400_and_creates_nothing(owner, settings, body, field):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = False
    _, api = owner
    response = create(api, body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="webhook.").exists()


@pytest.mark.django_db
def test_the_matrix_anonymous_wrong_scope_other_client(owner, programme, make_api_client):
    # given: an endpoint of the owner; a read-only client; another client of the same programme
    _, api = owner
    endpoint_id = create(api).json()["id"]
    _, read_key = make_api_client([programme], scopes=["read"], name="reader")
    _, other_key = make_api_client([programme], name="other")
    other = api_for(other_key)
    # then
    assert APIClient().get(URL).status_code == 401
    assert api_for(read_key).get(URL).status_code == 403
    assert create(api_for(read_key)).status_code == 403
    assert other.get(f"{URL}/{endpoint_id}").status_code == 404
    assert (
        other.patch(f"{URL}/{endpoint_id}", {"is_active": False}, format="json").status_code == 404
    )
    assert other.post(f"{URL}/{endpoint_id}/rotate-secret").status_code == 404
    assert other.get(URL).json()["results"] == []
    assert WebhookEndpoint.objects.get().is_active is True
