"""The deliveries API: the failed list and its filters, resend with corrected details, and
signed provider receipts. Providers are a real local HTTP server (tests.orders.delivery_stubs)."""

import json
import time

import pytest
from rest_framework.test import APIClient

from orders.delivery.receipts import receipt_sign
from orders.models import Delivery, Order
from orders.services import order_issue
from plum.actors import SYSTEM
from plum.models import AuditEvent, Member
from tests.factories import MemberFactory
from tests.orders.delivery_stubs import SMS_PROVIDER, deliver

pytestmark = pytest.mark.django_db
LIST = "/api/v1/deliveries"
SECRET = "receipt-secret-xyz"


def _issue(campaign, member) -> Order:
    return order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)


def _latest(order) -> Delivery:
    return Delivery.objects.filter(order=order).latest("pk")


@pytest.fixture
def world(http_providers, programme, other_programme, make_campaign):
    """Two campaigns; deliveries failed for different reasons and channels, one pending, and a
    failed one in another programme."""
    a = make_campaign(programme, name="A")
    b = make_campaign(programme, name="B")
    c = make_campaign(other_programme, name="C")
    no_phone = _issue(a, MemberFactory(programme=programme, preferred_channel="sms", phone=""))
    no_email = _issue(b, MemberFactory(programme=programme, preferred_channel="email", email=""))
    http_providers.answer("400:invalid_number")
    bad_number = _issue(a, MemberFactory(programme=programme, preferred_channel="sms"))
    deliver(_latest(bad_number))
    pending = _issue(a, MemberFactory(programme=programme, preferred_channel="email"))
    elsewhere = _issue(
        c, MemberFactory(programme=other_programme, preferred_channel="sms", phone="")
    )
    return {
        "a": a,
        "b": b,
        "no_phone": _latest(no_phone),
        "no_email": _latest(no_email),
        "bad_number": _latest(bad_number),
        "pending": _latest(pending),
        "elsewhere": _latest(elsewhere),
    }


def _ids(response):
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


# --- the failed list ---------------------------------------------------------------------------


def test_the_failed_list_and_its_filters(client_api, world, django_assert_max_num_queries):
    failed = [world["no_phone"].pk, world["no_email"].pk, world["bad_number"].pk]
    # when / then
    with django_assert_max_num_queries(8):
        assert _ids(client_api.get(LIST, {"status": "failed"})) == sorted(failed)
    assert _ids(client_api.get(LIST, {"status": "failed", "campaign": world["a"].pk})) == sorted(
        [world["no_phone"].pk, world["bad_number"].pk]
    )
    assert _ids(client_api.get(LIST, {"status": "failed", "channel": "email"})) == [
        world["no_email"].pk
    ]
    assert _ids(client_api.get(LIST, {"status": "failed", "reason": "invalid_number"})) == [
        world["bad_number"].pk
    ]
    assert _ids(client_api.get(LIST, {"status": "failed", "programme": "beta"})) == []
    assert _ids(client_api.get(LIST, {"status": "pending"})) == [world["pending"].pk]


def test_a_failed_row_names_order_reason_and_destination(client_api, world):
    row = client_api.get(LIST, {"reason": "invalid_number"}).json()["results"][0]
    bad = world["bad_number"]
    assert row["booking_id"] == bad.order.booking_id
    assert (row["status"], row["channel"], row["reason"], row["destination"]) == (
        "failed",
        "sms",
        "invalid_number",
        bad.destination,
    )
    assert (row["provider"], row["attempts"], row["is_resend"]) == (SMS_PROVIDER, 1, False)


def test_a_bad_filter_is_400(client_api, world):
    response = client_api.get(LIST, {"status": "lost"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"status": ['"lost" is not a valid choice.']}


def test_a_test_key_sees_no_live_deliveries(make_api, programme, world):
    assert _ids(make_api([programme], is_test=True).get(LIST, {"status": "failed"})) == []


def test_anonymous_is_401(world):
    assert APIClient().get(LIST).status_code == 401


# --- resend ------------------------------------------------------------------------------------


def _resend(api, delivery, body=None):
    return api.post(f"/api/v1/deliveries/{delivery.pk}/resend", body or {}, format="json")


def test_correct_and_resend_goes_to_the_new_number_audited(client_api, world, http_providers):
    # given
    bad = world["bad_number"]
    member = bad.order.member
    # when
    response = _resend(client_api, bad, {"phone": "+919800000001"})
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    new = Delivery.objects.get(pk=body["id"])
    assert (new.status, new.channel, new.destination, new.is_resend, new.previous_id) == (
        "pending",
        "sms",
        "+919800000001",
        True,
        bad.pk,
    )
    assert (new.resent_by_client_id, body["resent_by_label"]) == (
        client_api.plum_client.pk,
        "api:Test client",
    )
    assert Member.objects.get(pk=member.pk).phone == "+919800000001"
    member_audit = AuditEvent.objects.get(action="member.update", object_id=str(member.pk))
    assert member_audit.changes == {"phone": [bad.destination, "+919800000001"]}
    assert member_audit.actor_client_id == client_api.plum_client.pk
    resend_audit = AuditEvent.objects.get(action="delivery.resend", object_id=str(new.pk))
    assert resend_audit.changes["destination"] == [bad.destination, "+919800000001"]
    assert Order.objects.get(pk=bad.order_id).delivery_status == "pending"
    # when: the outbox sends it
    new = deliver(new)
    # then
    assert new.status == "delivered"
    assert http_providers.requests[-1]["body"]["to"] == "+919800000001"
    assert Order.objects.get(pk=bad.order_id).delivery_status == "delivered"
    assert Delivery.objects.get(pk=bad.pk).status == "failed"  # the history stays


def test_resend_by_another_channel(client_api, world, http_providers):
    # given: the e-mail failed for want of an address; the member has a phone
    failed = world["no_email"]
    # when
    response = _resend(client_api, failed, {"channel": "whatsapp"})
    # then
    assert response.status_code == 201, response.content
    new = deliver(Delivery.objects.get(pk=response.json()["id"]))
    assert (new.status, new.channel, new.provider) == ("delivered", "whatsapp", "acme-wa")
    assert http_providers.requests[-1]["body"]["channel"] == "whatsapp"


def _rows():
    return (
        list(Delivery.objects.order_by("pk").values_list("pk", "status")),
        list(Member.objects.order_by("pk").values("pk", "email", "phone")),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize(
    ("target", "body", "status", "code"),
    [
        ("pending", {}, 409, "delivery_in_progress"),
        ("bad_number", {"phone": "98765"}, 422, "invalid_recipient"),
        ("no_phone", {}, 422, "missing_contact"),
        ("bad_number", {"colour": "red"}, 400, "invalid"),
        ("elsewhere", {}, 404, "delivery_not_found"),
    ],
)
def test_a_refused_resend_changes_nothing(client_api, world, target, body, status, code):
    # given
    before = _rows()
    # when
    response = _resend(client_api, world[target], body)
    # then
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert _rows() == before


def test_a_read_only_key_cannot_resend(make_api, programme, world):
    api = make_api([programme], scopes=["read"])
    assert _resend(api, world["bad_number"]).status_code == 403


def test_a_support_agent_resends_with_a_session(client, make_user, programme, world):
    from plum import roles

    api = APIClient()
    api.force_login(make_user(roles.SUPPORT_AGENT, programme))
    response = _resend(api, world["no_phone"], {"phone": "+919800000002"})
    assert response.status_code == 201, response.content
    assert response.json()["resent_by_label"].startswith("support-")


# --- receipts ----------------------------------------------------------------------------------


@pytest.fixture
def receipts(settings):
    settings.PLUM_DELIVERY_RECEIPT_SECRETS = {SMS_PROVIDER: SECRET}


def _receipt(body: dict, *, secret=SECRET, timestamp=None, signed=True, provider=SMS_PROVIDER):
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {}
    if signed:
        headers = {
            "HTTP_X_PLUM_TIMESTAMP": timestamp,
            "HTTP_X_PLUM_SIGNATURE": receipt_sign(secret=secret, timestamp=timestamp, body=raw),
        }
    return APIClient().post(
        f"/api/v1/delivery-receipts/{provider}", raw, content_type="application/json", **headers
    )


@pytest.fixture
def delivered(http_providers, receipts, campaign, programme):
    order = _issue(campaign, MemberFactory(programme=programme, preferred_channel="sms"))
    delivery = deliver(_latest(order))
    assert delivery.status == "delivered"
    return delivery


def test_a_signed_failure_receipt_fails_a_delivered_delivery_once(delivered):
    body = {
        "message_id": delivered.provider_message_id,
        "status": "failed",
        "reason": "handset_off",
    }
    # when
    first = _receipt(body)
    second = _receipt(body)
    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == second.json() == {"id": delivered.pk, "status": "failed"}
    delivered.refresh_from_db()
    assert (delivered.status, delivered.reason) == ("failed", "handset_off")
    assert Order.objects.get(pk=delivered.order_id).delivery_status == "failed"
    assert AuditEvent.objects.filter(action="delivery.receipt").count() == 1
    assert AuditEvent.objects.get(action="delivery.receipt").actor_label == "provider:acme-sms"


def test_a_delivered_receipt_for_a_delivered_delivery_changes_nothing(delivered):
    response = _receipt({"message_id": delivered.provider_message_id, "status": "delivered"})
    assert response.json() == {"id": delivered.pk, "status": "delivered"}
    assert not AuditEvent.objects.filter(action="delivery.receipt").exists()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"signed": False}, 401, "signature_missing"),
        ({"secret": "guessed"}, 403, "signature_invalid"),
        ({"timestamp": int(time.time()) - 3600}, 403, "signature_invalid"),
        ({"provider": "nobody"}, 404, "not_found"),
    ],
)
def test_an_unsigned_or_badly_signed_receipt_is_refused(delivered, kwargs, status, code):
    body = {"message_id": delivered.provider_message_id, "status": "failed"}
    response = _receipt(body, **kwargs)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    delivered.refresh_from_db()
    assert delivered.status == "delivered"


def test_a_receipt_for_an_unknown_message_is_404(delivered):
    response = _receipt({"message_id": "prov-99999", "status": "failed"})
    assert response.status_code == 404
    assert Delivery.objects.get(pk=delivered.pk).status == "delivered"


def test_a_receipt_with_a_bad_body_is_400(delivered):
    response = _receipt({"message_id": delivered.provider_message_id, "status": "lost"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"status": ['"lost" is not a valid choice.']}
