"""Deliveries through real components: e-mail to a real SMTP server (aiosmtpd), SMS and
WhatsApp to a real local HTTP provider that answers 200, 500, timeouts, 400 and 429 on command.
The outbox is driven one attempt at a time (`deliver`)."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import Delivery, DeliveryAttempt, Order
from orders.services import deliveries_queue, order_approve, order_issue
from plum.actors import SYSTEM
from plum.errors import InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from tests.factories import MemberFactory
from tests.orders.delivery_stubs import TOKEN, deliver

pytestmark = pytest.mark.django_db


def _issue(campaign, member, **kwargs) -> Order:
    return order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM, **kwargs)


def _delivery(order) -> Delivery:
    return Delivery.objects.filter(order=order).latest("pk")


def _failed_events(order):
    return list(
        OutboxMessage.objects.filter(
            kind="event", payload__type="delivery.failed", payload__data__order_id=order.pk
        ).values_list("payload__data__reason", flat=True)
    )


# --- queueing ----------------------------------------------------------------------------------


def test_a_completed_order_queues_one_delivery_with_its_outbox_message(campaign, member):
    # when
    order = _issue(campaign, member)
    # then
    delivery = Delivery.objects.get(order=order)
    assert (delivery.status, delivery.channel, delivery.destination) == (
        "pending",
        "email",
        member.email,
    )
    assert (delivery.programme_id, delivery.campaign_id, delivery.is_resend) == (
        order.programme_id,
        campaign.pk,
        False,
    )
    message = delivery.outbox_message
    assert (message.kind, message.status, message.payload["booking_id"]) == (
        "delivery",
        "pending",
        order.booking_id,
    )
    assert Order.objects.get(pk=order.pk).delivery_status == "pending"
    assert AuditEvent.objects.filter(action="delivery.queue", programme_id=order.programme_id)


def test_a_held_order_queues_its_delivery_when_approved(programme, make_campaign, member):
    # given
    campaign = make_campaign(programme, approval_mode="manual")
    order = _issue(campaign, member)
    assert not Delivery.objects.filter(order=order).exists()
    # when
    order_approve(order=order, actor=SYSTEM)
    # then
    assert Delivery.objects.get(order=order).status == "pending"


@pytest.mark.parametrize(
    ("preferred", "campaign_default", "programme_default", "expected"),
    [
        ("whatsapp", "sms", "email", "whatsapp"),
        ("", "sms", "email", "sms"),
        ("", "", "whatsapp", "whatsapp"),
    ],
)
def test_the_channel_is_the_members_else_the_campaigns_else_the_programmes(
    programme, make_campaign, preferred, campaign_default, programme_default, expected
):
    # given
    programme.default_channel = programme_default
    programme.save(update_fields=["default_channel"])
    campaign = make_campaign(programme, default_channel=campaign_default)
    member = MemberFactory(programme=programme, preferred_channel=preferred)
    # when
    delivery = _delivery(_issue(campaign, member))
    # then
    assert delivery.channel == expected
    assert delivery.destination == (member.email if expected == "email" else member.phone)


def test_a_member_without_the_channels_address_gets_a_failed_delivery_at_once(campaign, programme):
    # given
    member = MemberFactory(programme=programme, preferred_channel="sms", phone="")
    # when
    order = _issue(campaign, member)
    # then
    delivery = _delivery(order)
    assert (delivery.status, delivery.reason, delivery.outbox_message_id) == (
        "failed",
        "missing_contact",
        None,
    )
    assert Order.objects.get(pk=order.pk).delivery_status == "failed"
    assert _failed_events(order) == ["missing_contact"]


def test_queueing_is_set_based_and_queues_each_order_once(
    campaign, programme, django_assert_max_num_queries
):
    # given: 40 completed orders, delivered by nobody yet
    orders = [_issue(campaign, MemberFactory(programme=programme)) for _ in range(40)]
    Delivery.objects.all().delete()
    OutboxMessage.objects.filter(kind="delivery").delete()
    # when: the whole batch costs a fixed number of queries
    with django_assert_max_num_queries(12), transaction.atomic():
        created = deliveries_queue(orders=orders, actor=SYSTEM)
    # then
    assert len(created) == 40
    assert OutboxMessage.objects.filter(kind="delivery").count() == 40
    # when: queued again, nothing new
    with transaction.atomic():
        again = deliveries_queue(orders=orders, actor=SYSTEM)
    assert again == []
    assert Delivery.objects.count() == 40


def test_the_database_refuses_a_second_first_delivery_and_a_second_open_one(campaign, member):
    # given
    order = _issue(campaign, member)
    first = _delivery(order)
    # then: a second non-resend delivery of the order
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(
            order=order, programme_id=order.programme_id, campaign=campaign, channel="sms"
        )
    # then: a resend while the first is still open
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(
            order=order,
            programme_id=order.programme_id,
            campaign=campaign,
            channel="sms",
            is_resend=True,
            previous=first,
        )
    # then: failed without a reason
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.filter(pk=first.pk).update(status="failed", failed_at=timezone.now())
    assert Delivery.objects.filter(order=order).count() == 1


# --- e-mail over real SMTP ---------------------------------------------------------------------


def test_an_email_delivery_sends_html_and_text_with_the_voucher(smtp_server, campaign, member):
    # given
    order = _issue(campaign, member)
    voucher = Order.objects.get(pk=order.pk).voucher
    # when
    delivery = deliver(_delivery(order))
    # then
    assert delivery.status == "delivered"
    assert delivery.provider == "smtp"
    assert delivery.provider_message_id == f"<{delivery.outbox_message_id}@plum.delivery>"
    (mail,) = smtp_server.messages
    assert mail["To"] == member.email
    assert order.booking_id in mail["Subject"]
    assert mail["X-Plum-Booking-Id"] == order.booking_id
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in mail.walk()
        if not part.is_multipart()
    }
    assert set(parts) == {"text/plain", "text/html"}
    expiry = timezone.localtime(voucher.expires_at, programme_tz(order)).strftime("%-d %B %Y")
    for body in parts.values():
        assert voucher.code in body
        assert "500.00 INR" in body
        assert order.booking_id in body
        assert expiry in body
        assert "How to redeem" in body
    assert "<code" in parts["text/html"]
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.outcome, attempt.channel, attempt.destination) == (
        "success",
        "email",
        member.email,
    )
    assert Order.objects.get(pk=order.pk).delivery_status == "delivered"


def programme_tz(order):
    from zoneinfo import ZoneInfo

    return ZoneInfo(order.programme.timezone)


def test_a_refused_recipient_fails_the_delivery_at_once(smtp_server, campaign, member):
    # given
    smtp_server.recorder.rcpt_reply = "550 5.1.1 No such user"
    order = _issue(campaign, member)
    # when
    delivery = deliver(_delivery(order))
    # then
    assert (delivery.status, delivery.reason) == ("failed", "recipient_refused")
    assert "No such user" in delivery.reason_detail
    assert delivery.outbox_message.status == "failed"
    assert Order.objects.get(pk=order.pk).delivery_status == "failed"
    assert _failed_events(order) == ["recipient_refused"]
    assert smtp_server.messages == []


def test_an_smtp_4xx_is_retried_then_delivered(smtp_server, campaign, member):
    # given
    smtp_server.recorder.data_replies = ["451 4.3.0 Try again later"]
    order = _issue(campaign, member)
    # when
    delivery = deliver(_delivery(order))
    # then
    assert delivery.status == "processing"
    assert Order.objects.get(pk=order.pk).delivery_status == "processing"
    assert delivery.outbox_message.next_attempt_at > timezone.now()
    # when
    delivery = deliver(delivery)
    # then
    assert delivery.status == "delivered"
    assert list(delivery.attempt_set.values_list("outcome", flat=True)) == [
        "transient",
        "success",
    ]
    assert len(smtp_server.messages) == 1


# --- SMS and WhatsApp over the HTTP provider contract -----------------------------------------


def _sms_member(programme, channel="sms"):
    return MemberFactory(programme=programme, preferred_channel=channel, phone="+919812345678")


@pytest.mark.parametrize(("channel", "name"), [("sms", "acme-sms"), ("whatsapp", "acme-wa")])
def test_a_phone_delivery_posts_the_contract_and_keeps_the_providers_id(
    http_providers, campaign, programme, channel, name
):
    # given
    order = _issue(campaign, _sms_member(programme, channel))
    voucher = Order.objects.get(pk=order.pk).voucher
    # when
    delivery = deliver(_delivery(order))
    # then
    assert (delivery.status, delivery.provider, delivery.provider_message_id) == (
        "delivered",
        name,
        "prov-00001",
    )
    (request,) = http_providers.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Idempotency-Key"] == str(delivery.outbox_message_id)
    body = request["body"]
    assert (body["to"], body["from"], body["message_id"], body["channel"]) == (
        "+919812345678",
        "PLUM",
        str(delivery.outbox_message_id),
        channel,
    )
    for part in (voucher.code, "500.00 INR", order.booking_id):
        assert part in body["body"]
    (attempt,) = delivery.attempt_set.all()
    assert (attempt.outcome, attempt.http_status) == ("success", 200)
    assert '"prov-00001"' in attempt.response_excerpt


def test_transient_failures_retry_with_the_same_idempotency_key_then_succeed(
    http_providers, campaign, programme
):
    # given: the provider fails with a 500, then times out, then accepts
    http_providers.answer("500", "timeout", "200")
    order = _issue(campaign, _sms_member(programme))
    delivery = _delivery(order)
    # when: the first attempt
    before = timezone.now()
    delivery = deliver(delivery)
    # then: processing, retried later with backoff (base 1 s: between 0.5 and 1 s)
    assert delivery.status == "processing"
    assert Order.objects.get(pk=order.pk).delivery_status == "processing"
    due = delivery.outbox_message.next_attempt_at
    assert before + timedelta(seconds=0.5) <= due <= timezone.now() + timedelta(seconds=1)
    # when: the next two attempts
    delivery = deliver(deliver(delivery))
    # then
    assert delivery.status == "delivered"
    assert Order.objects.get(pk=order.pk).delivery_status == "delivered"
    keys = {r["headers"]["Idempotency-Key"] for r in http_providers.requests}
    assert keys == {str(delivery.outbox_message_id)}
    assert len(http_providers.requests) == 3
    attempts = list(delivery.attempt_set.values_list("outcome", "http_status"))
    assert attempts == [("transient", 500), ("transient", None), ("success", 200)]
    assert delivery.outbox_message.attempts == 3


def test_429_waits_at_least_retry_after(http_providers, campaign, programme):
    # given
    http_providers.answer("429:120")
    order = _issue(campaign, _sms_member(programme))
    # when
    before = timezone.now()
    delivery = deliver(_delivery(order))
    # then: backoff alone would be at most 1 s; Retry-After says 120
    assert delivery.status == "processing"
    assert delivery.outbox_message.next_attempt_at >= before + timedelta(seconds=120)
    assert list(delivery.attempt_set.values_list("http_status", flat=True)) == [429]


def test_a_4xx_fails_at_once_with_the_providers_reason(http_providers, campaign, programme):
    # given
    http_providers.answer("400:invalid_number")
    order = _issue(campaign, _sms_member(programme))
    # when
    delivery = deliver(_delivery(order))
    deliver(delivery)  # the outbox does not try a failed message again
    # then
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reason) == ("failed", "invalid_number")
    assert delivery.outbox_message.status == "failed"
    assert len(http_providers.requests) == 1
    assert list(delivery.attempt_set.values_list("outcome", "http_status")) == [("permanent", 400)]
    assert Order.objects.get(pk=order.pk).delivery_status == "failed"
    assert _failed_events(order) == ["invalid_number"]


def test_transient_failures_until_the_limit_fail_the_delivery(
    http_providers, settings, campaign, programme
):
    # given
    settings.PLUM_DELIVERY_MAX_ATTEMPTS = 3
    http_providers.answer("500", "500", "500", "200")
    order = _issue(campaign, _sms_member(programme))
    delivery = _delivery(order)
    # when
    for _ in range(4):
        delivery = deliver(delivery)
    # then
    assert (delivery.status, delivery.reason) == ("failed", "retries_exhausted")
    assert delivery.outbox_message.status == "dead"
    assert len(http_providers.requests) == 3
    assert Order.objects.get(pk=order.pk).delivery_status == "failed"
    assert _failed_events(order) == ["retries_exhausted"]


def test_a_test_order_goes_to_the_console_never_to_the_provider(
    http_providers, campaign, programme
):
    # given
    order = _issue(campaign, _sms_member(programme), is_test=True)
    # when
    delivery = deliver(_delivery(order))
    # then
    assert (delivery.status, delivery.provider, delivery.is_test) == ("delivered", "console", True)
    assert http_providers.requests == []


def test_the_state_machine_refuses_a_failed_delivery_becoming_delivered(campaign, member):
    from orders.services.delivery import _transition

    delivery = _delivery(_issue(campaign, member))
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed", reason="x", failed_at=timezone.now()
    )
    delivery.refresh_from_db()
    with pytest.raises(InvalidTransitionError):
        _transition(delivery, "delivered")
    delivery.refresh_from_db()
    assert delivery.status == "failed"
