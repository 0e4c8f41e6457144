"""End to end through a real Celery worker on Redis: issuing an order commits its delivery's
outbox message, the on-commit hook publishes to Redis, and a worker process sends it over the
HTTP provider contract to a real local provider (a 500 first, retried) and over real SMTP."""

import time

import pytest
from django.utils import timezone

from orders.models import Delivery, Order
from orders.services import order_issue
from plum.actors import SYSTEM
from plum.models import OutboxMessage
from plum.tasks import outbox_deliver_task
from tests.factories import MemberFactory
from tests.orders.delivery_stubs import SMS_PROVIDER, TOKEN
from tests.stubs import celery_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def worker(services_env, smtp_server, http_providers):
    env = {
        **services_env,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
        "PLUM_SMS_BACKEND": "orders.delivery.http.HttpProviderBackend",
        "PLUM_SMS_NAME": SMS_PROVIDER,
        "PLUM_SMS_BASE_URL": http_providers.base_url,
        "PLUM_SMS_TOKEN": TOKEN,
        "PLUM_SMS_SENDER": "PLUM",
        "PLUM_SMS_TIMEOUT": "2",
        "OUTBOX_BACKOFF_BASE_SECONDS": "1",
        "OUTBOX_BACKOFF_MAX_SECONDS": "2",
    }
    with celery_worker(env) as process:
        yield process


def test_a_real_worker_delivers_by_sms_after_a_retry_and_by_email(
    worker, http_providers, smtp_server, programme, make_campaign
):
    # given: the provider fails the first SMS with a 500
    http_providers.answer("500")
    campaign = make_campaign(programme)
    sms_member = MemberFactory(programme=programme, preferred_channel="sms")
    email_member = MemberFactory(programme=programme, preferred_channel="email")
    # when: two orders complete (each in its own committed transaction)
    sms_order = order_issue(campaign=campaign, member=sms_member, source="api", actor=SYSTEM)
    email_order = order_issue(campaign=campaign, member=email_member, source="api", actor=SYSTEM)
    sms = Delivery.objects.get(order=sms_order)
    # then: the e-mail arrives; the SMS fails once and waits for its retry
    assert _wait_for(lambda: Delivery.objects.filter(order=email_order, status="delivered")), (
        "the worker did not deliver the e-mail"
    )
    assert _wait_for(lambda: Delivery.objects.filter(pk=sms.pk, status="processing"))
    assert [m["To"] for m in smtp_server.messages] == [email_member.email]
    # when: the retry is due and its task is published (what the sweeper does every 30 s)
    OutboxMessage.objects.filter(pk=sms.outbox_message_id).update(next_attempt_at=timezone.now())
    outbox_deliver_task.apply_async(args=[str(sms.outbox_message_id)])
    # then
    assert _wait_for(lambda: Delivery.objects.filter(pk=sms.pk, status="delivered")), (
        "the worker did not retry the SMS"
    )
    sms.refresh_from_db()
    assert list(sms.attempt_set.values_list("outcome", "http_status")) == [
        ("transient", 500),
        ("success", 200),
    ]
    keys = [r["headers"]["Idempotency-Key"] for r in http_providers.requests]
    assert keys == [str(sms.outbox_message_id)] * 2
    assert [r["body"]["to"] for r in http_providers.requests] == [sms_member.phone] * 2
    assert Order.objects.get(pk=sms_order.pk).delivery_status == "delivered"
    assert Order.objects.get(pk=email_order.pk).delivery_status == "delivered"
