"""kill -9 of a Celery worker (the whole process group: the parent and its prefork children)
mid-upload and mid-delivery batch, then a new worker and the sweepers beat runs. Every row
ends with exactly one order and one delivered delivery, and every voucher reaches the handset
once: the provider stub is sent a message again when a worker died between the provider's
answer and its commit, and drops it by its Idempotency-Key (the outbox message id), as the
provider contract requires (docs/delivery.md). Delivery to the provider is at-least-once;
delivery to the person is exactly-once through that key."""

import os
import signal
import time
from datetime import timedelta

import pytest
from django.db.models import Count

from orders.models import Delivery, DeliveryAttempt, Order, Upload, UploadRow
from orders.services.uploads import upload_confirm, upload_create_from_csv, upload_dispatch_sweep
from plum.actors import SYSTEM
from plum.celery import app as celery_app
from plum.models import Job
from plum.services.jobs import job_fail_stale
from plum.services.outbox import outbox_sweep
from tests.campaigns.builders import make_campaign
from tests.faults.checks import assert_system_consistent
from tests.faults.procs import kill_group, start_worker, wait_until
from tests.faults.provider import DedupProvider
from tests.orders.upload_helpers import csv_bytes, row, run_chunks

pytestmark = [
    pytest.mark.fault,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

TOKEN = "tok-fault"


@pytest.fixture
def provider(settings):
    """The dedup SMS provider, used by this process (the sweepers) and by the workers."""
    with DedupProvider() as server:
        settings.PLUM_SMS_BACKEND = "orders.delivery.http.HttpProviderBackend"
        settings.PLUM_SMS_PROVIDER = {
            "name": "fault-sms",
            "base_url": server.base_url,
            "token": TOKEN,
            "sender": "PLUM",
            "timeout": 5,
        }
        yield server


@pytest.fixture
def worker_env(services_env, provider):
    return {
        **services_env,
        "UPLOAD_CHUNK_ROWS": "50",
        "PLUM_SMS_BACKEND": "orders.delivery.http.HttpProviderBackend",
        "PLUM_SMS_NAME": "fault-sms",
        "PLUM_SMS_BASE_URL": provider.base_url,
        "PLUM_SMS_TOKEN": TOKEN,
        "PLUM_SMS_SENDER": "PLUM",
        "PLUM_SMS_TIMEOUT": "5",
    }


def _upload(campaign, rows: int) -> Upload:
    lines = [row(n, channel="sms") for n in range(1, rows + 1)]
    upload = upload_create_from_csv(
        campaign=campaign, raw=csv_bytes(*lines), file_name="kill.csv", source="admin", actor=SYSTEM
    )
    assert (upload.valid_count, upload.invalid_count) == (rows, 0)
    return upload


def _delivered(upload) -> int:
    return Delivery.objects.filter(
        order__upload_row__upload=upload, status="delivered", is_resend=False
    ).count()


def _recover(upload, rows: int, timeout: float) -> None:
    """What beat does every 30 s, run here every second: the upload dispatch sweep re-sends
    chunks the dead worker held, the outbox sweep sends messages it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Upload.objects.get(pk=upload.pk).status == "dispatching":
            upload_dispatch_sweep(stale_after=timedelta(seconds=5))
        outbox_sweep(limit=500)
        if _delivered(upload) == rows and Upload.objects.get(pk=upload.pk).status != "dispatching":
            return
        time.sleep(1)


def _assert_every_row_once(upload, rows: int, provider: DedupProvider) -> None:
    upload.refresh_from_db()
    assert (upload.status, upload.dispatched_count, upload.issued_count) == (
        "completed",
        rows,
        rows,
    )
    assert UploadRow.objects.filter(
        upload=upload, status="issued", order__isnull=False
    ).count() == (rows)
    orders = Order.objects.filter(source="upload")
    assert orders.count() == rows
    assert list(orders.values("member").annotate(n=Count("id")).filter(n__gt=1)) == []
    deliveries = Delivery.objects.filter(order__in=orders)
    assert deliveries.count() == rows
    assert deliveries.filter(status="delivered").count() == rows
    successes = DeliveryAttempt.objects.filter(delivery__in=deliveries, outcome="success")
    assert successes.count() == rows
    assert list(successes.values("delivery").annotate(n=Count("id")).filter(n__gt=1)) == []
    # the handset got each voucher once: one accepted key per delivery's outbox message
    keys = {str(pk) for pk in deliveries.values_list("outbox_message_id", flat=True)}
    handset = provider.handset_count_by_key()
    assert set(handset) == keys
    assert set(handset.values()) == {1}
    job = Job.objects.get(pk=upload.job_id)
    assert (job.status, job.done, job.total) == ("succeeded", rows, rows)
    assert_system_consistent()


def test_a_worker_killed_mid_upload_costs_no_row_its_order_or_sends_it_twice(
    programme, provider, worker_env
):
    # given: a 600-row file whose recipients take their voucher by SMS, and a worker
    rows = 600
    campaign = make_campaign(programme)
    upload = _upload(campaign, rows)
    celery_app.control.purge()
    worker = start_worker(worker_env)
    restarted = None
    try:
        # when: it is confirmed, and the worker is killed once a third of the rows are out
        upload_confirm(upload=upload, send_only_valid=False, actor=SYSTEM)
        assert wait_until(
            lambda: Upload.objects.get(pk=upload.pk).dispatched_count >= rows // 3, timeout=600
        ), "the worker did not dispatch"
        kill_group(worker)
        at_kill = Upload.objects.values("status", "dispatched_count").get(pk=upload.pk)
        assert at_kill["status"] == "dispatching"
        assert rows // 3 <= at_kill["dispatched_count"] < rows
        # and the stale-job sweep runs as if the workers had been away for its whole window
        assert job_fail_stale(stale_after=timedelta(0)) == 0
        # and a new worker starts, with the sweepers
        restarted = start_worker(worker_env)
        _recover(upload, rows, timeout=900)
    finally:
        kill_group(worker)
        kill_group(restarted)
    # then
    _assert_every_row_once(upload, rows, provider)
    print(
        f"kill mid-upload: {rows} rows, killed at {at_kill['dispatched_count']} dispatched, "
        f"{len(provider.state.requests)} provider requests, {provider.duplicates()} "
        f"duplicate(s) dropped by key, {len(provider.state.handset)} SMS on handsets"
    )


def test_a_worker_killed_mid_delivery_batch_sends_each_voucher_to_the_handset_once(
    programme, provider, worker_env
):
    # given: 200 rows issued (their deliveries and outbox messages committed, their tasks
    # queued in Redis); the provider will take the first 60 messages and then hold the
    # workers' requests after accepting them
    rows, first = 200, 60
    campaign = make_campaign(programme)
    upload = _upload(campaign, rows)
    celery_app.control.purge()
    upload_confirm(upload=upload, send_only_valid=False, actor=SYSTEM)
    run_chunks(upload)
    assert Upload.objects.get(pk=upload.pk).status == "completed"
    provider.hold(after=first)
    worker = start_worker(worker_env, concurrency=2)
    restarted = None
    try:
        # when: both pool processes are inside a send (the provider has taken the message and
        # not answered), the worker is killed
        assert wait_until(lambda: provider.held >= 2, timeout=300), "no send was held"
        kill_group(worker)
        provider.release()
        delivered_at_kill = _delivered(upload)
        held = provider.held
        assert delivered_at_kill <= first < rows
        # and a new worker starts, with the outbox sweeper
        restarted = start_worker(worker_env, concurrency=2)
        _recover(upload, rows, timeout=600)
    finally:
        kill_group(worker)
        kill_group(restarted)
    # then: every row once, every SMS on a handset once; the messages the dead worker was
    # sending were sent again and the provider dropped them by key
    _assert_every_row_once(upload, rows, provider)
    assert provider.duplicates() >= 2
    print(
        f"kill mid-delivery: {rows} deliveries, {delivered_at_kill} delivered at the kill, "
        f"{held} send(s) held, {len(provider.state.requests)} provider requests, "
        f"{provider.duplicates()} duplicate(s) dropped by key, "
        f"{len(provider.state.handset)} SMS on handsets"
    )


def _pool_children(worker) -> list[int]:
    with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as handle:
        return [int(pid) for pid in handle.read().split()]


def test_a_pool_process_killed_mid_send_is_requeued_by_its_worker_without_the_sweeper(
    programme, provider, worker_env
):
    # given: 100 rows issued, their deliveries queued; the provider takes 30 and then holds
    rows, first = 100, 30
    campaign = make_campaign(programme)
    upload = _upload(campaign, rows)
    celery_app.control.purge()
    upload_confirm(upload=upload, send_only_valid=False, actor=SYSTEM)
    run_chunks(upload)
    provider.hold(after=first)
    worker = start_worker(worker_env, concurrency=2)
    try:
        # when: one pool process is killed inside a send (as the OOM killer would), the
        # worker's parent survives
        assert wait_until(lambda: provider.held >= 2, timeout=300), "no send was held"
        children = _pool_children(worker)
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        provider.release()
        # then: with no sweeper running, the parent re-queues the lost task
        # (acks_late + reject_on_worker_lost) and the worker delivers everything
        assert wait_until(lambda: _delivered(upload) == rows, timeout=300), (
            f"{_delivered(upload)} of {rows} delivered without the sweeper"
        )
        assert worker.poll() is None
    finally:
        kill_group(worker)
    _assert_every_row_once(upload, rows, provider)
    assert provider.duplicates() >= 1
    print(
        f"pool process killed: {rows} deliveries, {len(provider.state.requests)} provider "
        f"requests, {provider.duplicates()} duplicate(s) dropped by key, "
        f"{len(provider.state.handset)} SMS on handsets"
    )
