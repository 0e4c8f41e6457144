"""A 10,000-row upload end to end through real Celery worker processes on Redis, with the
worker killed (SIGKILL, the whole process group) mid-dispatch and started again: afterwards
every valid row has exactly one order and one successful delivery."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db.models import Count

from orders.models import Delivery, DeliveryAttempt, Order, Upload, UploadRow
from orders.services.uploads import upload_confirm, upload_create_from_csv, upload_dispatch_sweep
from plum.actors import SYSTEM
from plum.celery import app as celery_app
from plum.models import Job
from plum.services.outbox import outbox_sweep
from tests.campaigns.builders import make_campaign
from tests.orders.upload_helpers import csv_bytes, row

ROWS = 10_000


def _start_worker(env):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "plum",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the pool children too
    )


def _kill(worker):
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    worker.wait(timeout=30)


def _counts(upload_id):
    return Upload.objects.values("status", "dispatched_count", "issued_count").get(pk=upload_id)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_never_costs_a_row_its_order_or_gives_it_two(
    services_env, programme, settings
):
    # given: a 10,000-row file (100 invalid rows, sent "valid only") and a worker
    settings.UPLOAD_CHUNK_ROWS = 500
    campaign = make_campaign(programme)
    lines = [
        row(n, email="bad" if n % 100 == 0 else f"p{n}@example.com") for n in range(1, ROWS + 1)
    ]
    upload = upload_create_from_csv(
        campaign=campaign, raw=csv_bytes(*lines), file_name="big.csv", source="admin", actor=SYSTEM
    )
    assert (upload.valid_count, upload.invalid_count) == (ROWS - 100, 100)
    celery_app.control.purge()
    env = {**services_env, "UPLOAD_CHUNK_ROWS": "500"}
    worker = _start_worker(env)
    restarted = None
    try:
        # when: confirmed; the worker is killed once a good part is dispatched
        upload_confirm(upload=upload, send_only_valid=True, actor=SYSTEM)
        deadline = time.monotonic() + 1200
        while _counts(upload.pk)["dispatched_count"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        _kill(worker)
        at_kill = _counts(upload.pk)
        assert at_kill["status"] == "dispatching"
        assert 1000 <= at_kill["dispatched_count"] < ROWS - 100
        # then the worker is started again, and the sweeper (what beat runs) re-sends what the
        # dead worker held
        restarted = _start_worker(env)
        deadline = time.monotonic() + 2400  # the shared 2-core machine can be very slow
        while time.monotonic() < deadline:
            if _counts(upload.pk)["status"] != "dispatching":
                break
            upload_dispatch_sweep(stale_after=timedelta(seconds=30))
            time.sleep(2)
        # and every order's voucher goes out once: by the worker, or by the outbox sweeper
        # (what beat runs) for the messages the dead worker held
        delivered = Delivery.objects.filter(order__source="upload", status="delivered")
        while delivered.count() < ROWS - 100 and time.monotonic() < deadline:
            outbox_sweep(limit=1000)
            time.sleep(1)
    finally:
        _kill(worker)
        if restarted is not None:
            _kill(restarted)
    # then: every valid row has exactly one order, and no other order exists
    final = _counts(upload.pk)
    assert final == {
        "status": "completed",
        "dispatched_count": ROWS - 100,
        "issued_count": ROWS - 100,
    }
    assert UploadRow.objects.filter(
        upload=upload, status="issued", order__isnull=False
    ).count() == (ROWS - 100)
    assert UploadRow.objects.filter(upload=upload, status="valid").count() == 0
    assert Order.objects.filter(source="upload").count() == ROWS - 100
    per_member = Order.objects.values("member").annotate(n=Count("id")).filter(n__gt=1)
    assert list(per_member) == []
    campaign.refresh_from_db()
    assert campaign.issued_count == ROWS - 100
    job = Job.objects.get(pk=Upload.objects.get(pk=upload.pk).job_id)
    assert (job.status, job.done, job.total) == ("succeeded", ROWS - 100, ROWS - 100)
    deliveries = Delivery.objects.filter(order__source="upload")
    assert deliveries.count() == ROWS - 100
    assert deliveries.filter(status="delivered").count() == ROWS - 100
    assert list(deliveries.values("order").annotate(n=Count("id")).filter(n__gt=1)) == []
    successes = DeliveryAttempt.objects.filter(delivery__in=deliveries, outcome="success")
    assert successes.count() == ROWS - 100
