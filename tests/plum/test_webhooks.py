"""Outbound webhooks, Slack and Teams deliveries against a real local HTTP server: payloads,
signatures, retries with backoff, the retry window, replay and auto-disable.

These tests drive the outbox themselves (`deliver_due`), as the sweeper would."""

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from plum import event_catalog, secretbox
from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import (
    AuditEvent,
    Delivery,
    DeliveryAttempt,
    NotificationChannel,
    OutboxMessage,
    WebhookEndpoint,
)
from plum.services.deliveries import (
    DeliveryNotReplayableError,
    DeliveryTargetInactiveError,
    deliveries_fan_out,
    deliveries_replay_failed,
    delivery_replay,
)
from plum.services.events import UnknownEventTypeError, event_emit
from plum.services.notifications import notification_channel_create
from plum.services.outbox import outbox_sweep
from plum.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from plum.webhooks_verify import WebhookVerificationError, is_valid, verify
from tests.plum.webhook_receiver import Receiver

ORDER_DATA = {
    "booking_id": "PLM-ABCD-EFGH",
    "order_id": 7,
    "campaign_id": 3,
    "member_external_id": "emp-1",
    "value": "500.00",
    "currency": "INR",
    "source": "api",
    "status": "completed",
    "approval_state": "not_required",
    "is_test": False,
    "reference": "",
    "voucher_id": 11,
}


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = True
    settings.PLUM_BASE_URL = "https://plum.example.com"
    with Receiver() as server:
        yield server


@pytest.fixture
def endpoint_and_secret(programme, make_api_client, receiver):
    client, _ = make_api_client([programme], name="CRM")
    return webhook_endpoint_create(
        client=client, url=receiver.url("/hook"), event_types=["*"], actor=SYSTEM
    )


@pytest.fixture
def endpoint(endpoint_and_secret):
    return endpoint_and_secret[0]


def emit(event_type="order.completed", programme=None, data=None):
    with transaction.atomic():
        return event_emit(
            event_type=event_type,
            programme_id=programme.pk if programme else None,
            data=ORDER_DATA if data is None else data,
        )


def deliver_due(rounds=5):
    """Run the sweeper until nothing is due (events first fan out, then their deliveries)."""
    total = 0
    for _ in range(rounds):
        done = outbox_sweep()
        total += done
        if not done:
            break
    return total


def make_due(delivery):
    OutboxMessage.objects.filter(pk=delivery.message_id).update(next_attempt_at=timezone.now())


def example_data(event) -> dict:
    samples = {"integer": 42, "string": "x", "boolean": True, "array": [1, 2]}
    data = {}
    for name, schema in event.properties.items():
        kind = schema["type"] if isinstance(schema["type"], str) else schema["type"][0]
        data[name] = schema.get("enum", [samples[kind]])[0]
    data["is_test"] = False
    return data


# --- payloads -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", event_catalog.EVENT_TYPE_NAMES)
def test_every_catalogue_event_reaches_the_webhook_slack_and_teams_in_its_shape(
    event_type, programme, endpoint_and_secret, receiver
):
    # given: an endpoint, a Slack and a Teams channel of the programme
    endpoint, secret = endpoint_and_secret
    for kind in ("slack", "teams"):
        notification_channel_create(
            programme=programme,
            name=f"#{kind}",
            kind=kind,
            url=receiver.url(f"/{kind}"),
            event_types=[event_type],
            actor=SYSTEM,
        )
    event = event_catalog.CATALOGUE[event_type]
    data = example_data(event)
    # when
    message = emit(event_type, programme, data)
    deliver_due()
    # then: the webhook gets the signed envelope
    [hook] = receiver.at("/hook")
    assert hook.json == {
        "id": str(message.pk),
        "type": event_type,
        "occurred_at": message.payload["occurred_at"],
        "programme": {"id": programme.pk, "slug": "alpha"},
        "data": data,
    }
    assert hook.headers["Plum-Event-Id"] == str(message.pk)
    assert hook.headers["Plum-Event-Type"] == event_type
    verify(hook.body, hook.headers["Plum-Signature"], secret)
    # Slack: Block Kit with the catalogue's title and a button back to the admin
    [slack] = receiver.at("/slack")
    blocks = slack.json["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "actions", "context"]
    assert blocks[0]["text"]["text"] == event.title
    assert blocks[3]["elements"][0]["url"].startswith("https://plum.example.com/admin/")
    assert blocks[4]["elements"][0]["text"] == f"Alpha · {event_type}"
    assert slack.json["text"].startswith(f"{event.title}: ")
    # Teams: one Adaptive Card with the same title, facts and link
    [teams] = receiver.at("/teams")
    [attachment] = teams.json["attachments"]
    card = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["type"] == "AdaptiveCard"
    assert card["body"][0]["text"] == event.title
    assert card["actions"][0]["url"] == blocks[3]["elements"][0]["url"]
    assert len(card["body"][2]["facts"]) == min(len(data), 10)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.django_db
def test_an_order_event_links_to_the_order_and_escapes_slack_markup(programme, receiver):
    # given
    notification_channel_create(
        programme=programme,
        name="#ops",
        kind="slack",
        url=receiver.url("/slack"),
        event_types=["order.cancelled"],
        actor=SYSTEM,
    )
    # when
    data = {**ORDER_DATA, "status": "cancelled", "reason": "<script> & co", "rejected": False}
    emit("order.cancelled", programme, data)
    emit("order.completed", programme)  # not wanted by the channel
    deliver_due()
    # then
    [slack] = receiver.at("/slack")
    blocks = slack.json["blocks"]
    assert blocks[1]["text"]["text"] == "Order PLM-ABCD-EFGH was cancelled: &lt;script&gt; &amp; co"
    assert (
        blocks[3]["elements"][0]["url"] == "https://plum.example.com/admin/orders/order/7/change/"
    )
    assert {"type": "mrkdwn", "text": "*booking id*\nPLM-ABCD-EFGH"} in blocks[2]["fields"]


# --- signatures -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_signature_verifies_and_a_tampered_body_or_wrong_secret_fails(
    programme, endpoint_and_secret, receiver
):
    # given
    _, secret = endpoint_and_secret
    emit(programme=programme)
    deliver_due()
    [hook] = receiver.at("/hook")
    header = hook.headers["Plum-Signature"]
    tampered = hook.body.replace(b"500.00", b"900.00")
    # then
    assert header.startswith("t=") and header.count("v1=") == 1
    assert is_valid(hook.body, header, secret)
    assert not is_valid(tampered, header, secret)
    assert not is_valid(hook.body, header, "whsec_wrong")
    timestamp = int(header.split(",")[0][2:])
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(hook.body, header, secret, now=timestamp + 301)
    with pytest.raises(WebhookVerificationError, match="Malformed"):
        verify(hook.body, "v1=abc", secret)


@pytest.mark.django_db
def test_a_rotated_secret_signs_with_both_during_the_grace_period_then_only_the_new(
    programme, endpoint_and_secret, receiver
):
    # given
    endpoint, old = endpoint_and_secret
    endpoint, new = webhook_endpoint_rotate_secret(
        endpoint=endpoint, actor=SYSTEM, grace=timedelta(hours=2)
    )
    # when
    emit(programme=programme)
    deliver_due()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    emit(programme=programme)
    deliver_due()
    # then
    during, after = receiver.at("/hook")
    assert during.headers["Plum-Signature"].count("v1=") == 2
    assert is_valid(during.body, during.headers["Plum-Signature"], old)
    assert is_valid(during.body, during.headers["Plum-Signature"], new)
    assert after.headers["Plum-Signature"].count("v1=") == 1
    assert not is_valid(after.body, after.headers["Plum-Signature"], old)
    assert is_valid(after.body, after.headers["Plum-Signature"], new)
    assert new != old and new.startswith("whsec_")
    assert AuditEvent.objects.filter(action="webhook.endpoint.rotate_secret").count() == 1


@pytest.mark.django_db
def test_secrets_and_channel_urls_are_stored_encrypted(programme, endpoint_and_secret, receiver):
    # given
    endpoint, secret = endpoint_and_secret
    url = "https://hooks.slack.com/services/T000/B000/abcdefghijklmnopqrstuvwx"
    channel = notification_channel_create(
        programme=programme, name="#x", kind="slack", url=url, event_types=["*"], actor=SYSTEM
    )
    # then
    assert secret not in endpoint.secret_encrypted
    assert secretbox.decrypt(endpoint.secret_encrypted) == secret
    assert url not in channel.url_encrypted and "abcdefgh" not in channel.url_encrypted
    assert channel.url_hint == "https://hooks.slack.com/…uvwx"
    assert secretbox.decrypt(channel.url_encrypted) == url
    audited = json.dumps(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert secret not in audited and url not in audited


# --- retries, timeouts, the retry window ----------------------------------------------------


@pytest.mark.django_db
def test_a_500_is_retried_with_backoff_and_the_attempts_are_logged(
    programme, endpoint, receiver, settings
):
    # given: the receiver fails twice with 500, then accepts
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 30
    receiver.script("/hook", (500, 0), (503, 0))
    message = emit(programme=programme)
    # when: the first attempt
    started = timezone.now()
    deliver_due()
    delivery = Delivery.objects.get()
    outbox = OutboxMessage.objects.get(pk=delivery.message_id)
    # then: pending, due again in 15-30 s (first backoff with jitter), not before
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert (outbox.status, outbox.attempts) == ("pending", 1)
    # (slack for a busy machine: `started` is taken before the fan-out and the POST)
    assert 15 <= (outbox.next_attempt_at - started).total_seconds() <= 30 + 10
    assert deliver_due() == 0
    # when: the retries become due
    make_due(delivery)
    deliver_due()
    delivery.refresh_from_db()
    outbox.refresh_from_db()
    assert 30 - 10 <= (outbox.next_attempt_at - timezone.now()).total_seconds() <= 60  # 2nd
    make_due(delivery)
    deliver_due()
    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery))
    assert [(a.status_code, a.succeeded) for a in attempts] == [
        (500, False),
        (503, False),
        (200, True),
    ]
    assert attempts[0].response_excerpt == '{"error":"receiver says no"}'
    assert attempts[2].response_excerpt == "ok"
    assert all(a.latency_ms >= 0 for a in attempts)
    assert set(receiver.event_ids("/hook")) == {str(message.pk)}
    bodies = {r.body for r in receiver.at("/hook")}
    assert len(bodies) == 1, "every attempt sends the same bytes"
    assert WebhookEndpoint.objects.get().consecutive_failures == 0


@pytest.mark.django_db
def test_a_timeout_is_retried(programme, endpoint, receiver, settings):
    # given: the receiver answers after 2 s; Plum waits 0.5 s
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.script("/hook", (200, 2.0))
    emit(programme=programme)
    # when
    deliver_due()
    delivery = Delivery.objects.get()
    make_due(delivery)
    deliver_due()
    # then
    delivery.refresh_from_db()
    first, second = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (first.status_code, first.succeeded) == (None, False)
    assert "timed out" in first.error
    assert 400 <= first.latency_ms < 2000
    assert (second.status_code, second.succeeded) == (200, True)
    assert delivery.status == "succeeded"


@pytest.mark.django_db
def test_a_delivery_is_dead_after_its_retry_window(programme, endpoint, receiver, settings):
    # given: retries go on past the outbox's usual 8 attempts while the window is open
    settings.OUTBOX_MAX_ATTEMPTS = 8
    receiver.script("/hook", *[(500, 0)] * 12)
    emit(programme=programme)
    deliver_due()
    delivery = Delivery.objects.get()
    for _ in range(9):
        make_due(delivery)
        deliver_due()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 10)
    # when: the clock passes the window (now = expires_at + 1 s) and the next attempt fails
    Delivery.objects.filter(pk=delivery.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    make_due(delivery)
    deliver_due()
    # then: dead, visible, and never sent again
    delivery.refresh_from_db()
    outbox = OutboxMessage.objects.get(pk=delivery.message_id)
    assert (delivery.status, delivery.attempts) == ("dead", 11)
    assert (outbox.status, outbox.attempts) == ("dead", 11)
    make_due(delivery)
    assert deliver_due() == 0
    assert len(receiver.at("/hook")) == 11


@pytest.mark.django_db
def test_the_retry_window_is_24_hours_from_the_event(programme, endpoint, receiver):
    # when
    before = timezone.now()
    emit(programme=programme)
    deliver_due()
    # then
    delivery = Delivery.objects.get()
    window = delivery.expires_at - before
    assert timedelta(hours=24) <= window <= timedelta(hours=24, seconds=5)


@pytest.mark.django_db
def test_a_4xx_fails_at_once_without_retry(programme, endpoint, receiver):
    # given
    receiver.script("/hook", (400, 0))
    emit(programme=programme)
    # when
    deliver_due()
    # then
    delivery = Delivery.objects.get()
    outbox = OutboxMessage.objects.get(pk=delivery.message_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 400)
    assert outbox.status == "failed"
    assert len(receiver.at("/hook")) == 1


# --- replay ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_replay_sends_a_failed_delivery_again_with_the_same_event_id(
    programme, endpoint, receiver, admin_user
):
    # given
    receiver.script("/hook", (400, 0))
    message = emit(programme=programme)
    deliver_due()
    delivery = Delivery.objects.get()
    first_message = delivery.message_id
    # when
    delivery_replay(delivery=delivery, actor=admin_user)
    deliver_due()
    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.replays) == ("succeeded", 2, 1)
    assert delivery.message_id != first_message
    assert [r.headers["Plum-Event-Id"] for r in receiver.at("/hook")] == [str(message.pk)] * 2
    replay = AuditEvent.objects.get(action="delivery.replay")
    assert (replay.actor_user_id, replay.object_id) == (admin_user.pk, str(delivery.pk))
    assert replay.changes == {"status": ["failed", "pending"]}


@pytest.mark.django_db
def test_replay_refuses_a_delivery_that_did_not_fail(programme, endpoint, receiver, admin_user):
    # given
    emit(programme=programme)
    deliver_due()
    delivery = Delivery.objects.get()
    # when / then
    with pytest.raises(DeliveryNotReplayableError):
        delivery_replay(delivery=delivery, actor=admin_user)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.replays) == ("succeeded", 0)
    assert not AuditEvent.objects.filter(action="delivery.replay").exists()


@pytest.mark.django_db
def test_replay_all_failed_of_an_endpoint(programme, endpoint, receiver, admin_user):
    # given: three deliveries fail, one succeeds
    receiver.script("/hook", (404, 0), (410, 0), (422, 0))
    for _ in range(4):
        emit(programme=programme)
    deliver_due()
    assert sorted(Delivery.objects.values_list("status", flat=True)) == [
        "failed",
        "failed",
        "failed",
        "succeeded",
    ]
    # when
    replayed = deliveries_replay_failed(target=endpoint, actor=admin_user)
    deliver_due()
    # then
    assert replayed == 3
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert sorted(receiver.event_ids("/hook").values()) == [1, 2, 2, 2]
    audit = AuditEvent.objects.get(action="delivery.replay_failed")
    assert audit.changes["count"] == [None, 3]


# --- auto-disable ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_endpoint_is_disabled_after_a_run_of_failures_and_the_programme_is_told(
    programme, endpoint, receiver, settings, admin_user
):
    # given: disable after 3 consecutive failures; the programme's Slack channel listens
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    notification_channel_create(
        programme=programme,
        name="#alerts",
        kind="slack",
        url=receiver.url("/slack"),
        event_types=["webhook.endpoint_disabled"],
        actor=SYSTEM,
    )
    receiver.script("/hook", (500, 0), (500, 0), (200, 0), (500, 0), (500, 0), (500, 0))
    # when: 500, 500, 200 (the run resets), 500, 500, 500
    for _ in range(3):
        emit(programme=programme)
    deliver_due()
    for delivery in Delivery.objects.filter(status="pending"):
        make_due(delivery)
    deliver_due()
    for delivery in Delivery.objects.filter(status="pending"):
        make_due(delivery)
    deliver_due()
    # then
    endpoint.refresh_from_db()
    assert (endpoint.is_active, endpoint.consecutive_failures) == (False, 3)
    assert endpoint.disabled_reason == "Disabled after 3 consecutive failed deliveries."
    assert AuditEvent.objects.filter(action="webhookendpoint.auto_disable").count() == 1
    [alert] = receiver.at("/slack")
    assert alert.json["blocks"][0]["text"]["text"] == "Webhook endpoint disabled"
    assert receiver.url("/hook") in alert.json["blocks"][1]["text"]["text"]
    # and: what was still pending is failed, not sent; replay waits for re-enabling
    for delivery in Delivery.objects.filter(status="pending"):
        make_due(delivery)
    deliver_due()
    sent = len(receiver.at("/hook"))
    assert sent == 6
    assert not Delivery.objects.filter(endpoint=endpoint, status="pending").exists()
    with pytest.raises(DeliveryTargetInactiveError):
        deliveries_replay_failed(target=endpoint, actor=admin_user)
    # when: an admin enables it again and replays
    endpoint = webhook_endpoint_update(
        endpoint=endpoint, actor=admin_user, data={"is_active": True}
    )
    assert (endpoint.consecutive_failures, endpoint.disabled_at) == (0, None)
    deliveries_replay_failed(target=endpoint, actor=admin_user)
    deliver_due()
    assert set(Delivery.objects.filter(endpoint=endpoint).values_list("status", flat=True)) == {
        "succeeded"
    }


@pytest.mark.django_db
def test_a_slack_channel_is_disabled_after_a_run_of_failures(programme, receiver, settings):
    # given
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 2
    channel = notification_channel_create(
        programme=programme,
        name="#broken",
        kind="slack",
        url=receiver.url("/slack"),
        event_types=["*"],
        actor=SYSTEM,
    )
    receiver.script("/slack", (404, 0), (404, 0))
    # when
    emit(programme=programme)
    emit(programme=programme)
    deliver_due()
    # then
    channel.refresh_from_db()
    assert (channel.is_active, channel.consecutive_failures) == (False, 2)
    assert OutboxMessage.objects.filter(
        kind="event", payload__type="notification.channel_disabled"
    ).exists()


# --- routing and scope ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_client_gets_only_its_programmes_live_events_and_wanted_types(
    programme, other_programme, make_api_client, receiver
):
    # given
    def endpoint_for(programmes, path, event_types=("*",), is_test=False):
        client, _ = make_api_client(programmes, is_test=is_test, name=path)
        return webhook_endpoint_create(
            client=client, url=receiver.url(path), event_types=list(event_types), actor=SYSTEM
        )[0]

    endpoint_for([programme], "/mine")
    endpoint_for([other_programme], "/other")
    endpoint_for([programme], "/test", is_test=True)
    endpoint_for([programme], "/redeemed-only", event_types=["voucher.redeemed"])
    endpoint_for([programme, other_programme], "/both")
    # when
    live = emit(programme=programme)
    test = emit(programme=programme, data={**ORDER_DATA, "is_test": True})
    emit(programme=None)
    deliver_due()
    # then
    assert receiver.event_ids("/mine") == {str(live.pk): 1}
    assert receiver.event_ids("/both") == {str(live.pk): 1}
    assert receiver.event_ids("/test") == {str(test.pk): 1}
    assert receiver.at("/other") == []
    assert receiver.at("/redeemed-only") == []


@pytest.mark.django_db
def test_fanning_an_event_out_twice_delivers_it_once(programme, endpoint, receiver):
    # given
    with transaction.atomic():
        message = event_emit(
            event_type="order.completed", programme_id=programme.pk, data=ORDER_DATA
        )
    # when
    first = deliveries_fan_out(message)
    second = deliveries_fan_out(message)
    deliver_due()
    # then
    assert (first, second) == (1, 0)
    assert receiver.event_ids("/hook") == {str(message.pk): 1}


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_event_emit_refuses_an_event_type_not_in_the_catalogue(programme):
    with pytest.raises(UnknownEventTypeError, match="not in plum.event_catalog"):
        emit("voucher.teleported", programme, {})
    with pytest.raises(UnknownEventTypeError, match="lacks required fields"):
        emit("order.completed", programme, {"order_id": 1})
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_outside_strict_mode_an_unknown_event_is_logged_and_kept(programme, settings, caplog):
    settings.PLUM_STRICT_EVENTS = False
    message = emit("voucher.teleported", programme, {})
    assert message.payload["type"] == "voucher.teleported"
    assert "not in plum.event_catalog" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "event_types", "field"),
    [
        ("http://hooks.example.com/x", ["*"], "url"),
        ("https://127.0.0.1/x", ["*"], "url"),
        ("https://localhost/x", ["*"], "url"),
        ("https://10.1.2.3/x", ["*"], "url"),
        ("ftp://example.com/x", ["*"], "url"),
        ("https://example.com/x", ["order.teleported"], "event_types"),
        ("https://example.com/x", [], "event_types"),
    ],
)
def test_endpoint_and_channel_input_is_refused_with_nothing_created(
    programme, make_api_client, settings, url, event_types, field
):
    # given: production rules
    settings.WEBHOOK_ALLOW_INSECURE_URLS = False
    client, _ = make_api_client([programme])
    audit_before = AuditEvent.objects.count()
    # when / then
    with pytest.raises(InvalidInputError) as refused:
        webhook_endpoint_create(client=client, url=url, event_types=event_types, actor=SYSTEM)
    assert field in refused.value.fields
    with pytest.raises(InvalidInputError):
        notification_channel_create(
            programme=programme,
            name="#x",
            kind="slack",
            url=url,
            event_types=event_types,
            actor=SYSTEM,
        )
    assert not WebhookEndpoint.objects.exists()
    assert not NotificationChannel.objects.exists()
    assert AuditEvent.objects.count() == audit_before


def test_the_openapi_description_lists_the_catalogue(settings):
    description = settings.SPECTACULAR_SETTINGS["DESCRIPTION"]
    for name in event_catalog.EVENT_TYPE_NAMES:
        assert f"`{name}`" in description
    assert "Plum-Signature" in description
