"""A burst of 1,000 events committed while the broker is down is delivered in full once the
sweeper runs, each event exactly once to each endpoint (the receiver counts by event id)."""

import subprocess
import sys
import threading

import pytest
from django.db import connection

from plum.actors import SYSTEM
from plum.models import Delivery, OutboxMessage
from plum.services.outbox import outbox_sweep
from plum.services.webhooks import webhook_endpoint_create
from tests.plum.webhook_receiver import Receiver

EVENTS = 1000

BURST_SCRIPT = """
import os, sys, time
import django
django.setup()
from django.db import transaction
from plum.services.events import event_emit
programme_id = int(os.environ["BURST_PROGRAMME_ID"])
started = time.monotonic()
with transaction.atomic():
    for i in range(int(os.environ["BURST_EVENTS"])):
        event_emit(event_type="voucher.redeemed", programme_id=programme_id, data={
            "voucher_id": i, "campaign_id": 1, "amount": "10.00", "balance": "0.00",
            "reference": f"burst-{i}"})
print(round(time.monotonic() - started, 2))
"""


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_burst_committed_while_the_broker_is_down_is_delivered_exactly_once_per_endpoint(
    programme, make_api_client, services_env, settings
):
    from tests.stubs import free_port

    settings.WEBHOOK_ALLOW_INSECURE_URLS = True
    with Receiver() as receiver:
        # given: two endpoints of two clients of the programme
        for path in ("/crm", "/erp"):
            client, _ = make_api_client([programme], name=path)
            webhook_endpoint_create(
                client=client, url=receiver.url(path), event_types=["*"], actor=SYSTEM
            )
        # when: another process commits 1,000 events while its broker is unreachable
        env = {
            **services_env,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "BURST_PROGRAMME_ID": str(programme.pk),
            "BURST_EVENTS": str(EVENTS),
        }
        done = subprocess.run(
            [sys.executable, "-c", BURST_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        assert OutboxMessage.objects.filter(kind="event", status="pending").count() == EVENTS
        assert not Delivery.objects.exists()

        # and: once it is back, four sweepers run in parallel until nothing is due
        def sweep():
            try:
                while outbox_sweep(limit=200):
                    pass
            finally:
                connection.close()

        threads = [threading.Thread(target=sweep) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        # then: every event reached each endpoint exactly once
        for path in ("/crm", "/erp"):
            counts = receiver.event_ids(path)
            assert len(counts) == EVENTS, path
            assert set(counts.values()) == {1}, path
        assert receiver.event_ids("/crm").keys() == receiver.event_ids("/erp").keys()
        assert Delivery.objects.filter(status="succeeded").count() == 2 * EVENTS
        assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}
        assert float(done.stdout.split()[-1]) < 120, "commits must not wait on the broker"
