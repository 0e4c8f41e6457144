"""Every Celery task delivered twice: a registry of cases, one per registered plum task, so a
newly registered task fails `test_every_registered_task_has_a_case` until it gets one.

The beat sweeps run twice in a row (and in reversed order against each other); the second pass
must find nothing left to do. Tasks that take an id are listed in NOT_YET_COVERED with the test
that proves them elsewhere; this file does not claim them."""

import pytest
from django.db import transaction

from campaigns.models import Voucher
from plum.celery import app
from plum.models import Job, OutboxMessage
from plum.services.outbox import outbox_enqueue
from tests.campaigns.builders import fill_pool, make_campaign
from tests.faults.checks import assert_system_consistent

pytestmark = [pytest.mark.fault, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SWEEPS = [
    "plum.tasks.outbox_sweep_task",
    "plum.tasks.idempotency_purge_task",
    "plum.tasks.job_fail_stale_task",
    "wallets.tasks.points_expire_due_task",
    "campaigns.tasks.vouchers_expire_lapsed_task",
    "orders.tasks.payouts.payouts_close_task",
    "orders.tasks.uploads.upload_dispatch_sweep_task",
    "plum.tasks.audit_seal_task",
    "support.tasks.tickets_sla_sweep_task",
]
NOT_YET_COVERED = {
    "orders.tasks.uploads.upload_chunk_dispatch_task": (
        "takes a chunk id; redelivery proven by tests/e2e/test_upload_worker.py (SIGKILL)"
    ),
}


def _plum_tasks() -> set[str]:
    app.loader.import_default_modules()
    return {name for name in app.tasks if not name.startswith("celery.")}


def test_every_registered_task_has_a_case():
    # given / when
    registered = _plum_tasks()
    # then
    assert registered == set(SWEEPS) | set(NOT_YET_COVERED) | {
        "plum.tasks.outbox_deliver_task",
        "plum.tasks.job_run_task",
    }


def test_every_sweep_run_twice_and_in_reverse_order_has_no_second_effect(programme):
    # given
    tasks = [app.tasks[name] for name in SWEEPS]
    # when
    for task in tasks + tasks[::-1]:
        task.run()
    second = {name: app.tasks[name].run() for name in SWEEPS}
    # then: a second pass finds nothing left to do
    assert {n: r for n, r in second.items() if r} == {}
    assert_system_consistent()


def test_outbox_deliver_twice_and_out_of_order_sends_each_message_once(
    smtp_server, django_capture_on_commit_callbacks
):
    # given: three e-mails committed, their on-commit publish not run
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        ids = [
            outbox_enqueue(
                kind="email", payload={"to": [f"m{i}@example.com"], "subject": "R", "text": "x"}
            ).pk
            for i in range(3)
        ]
    task = app.tasks["plum.tasks.outbox_deliver_task"]
    # when: every message delivered twice, last first
    for message_id in ids[::-1] + ids:
        task.run(str(message_id))
    # then
    received = sorted(m["X-Plum-Message-Id"] for m in smtp_server.messages)
    assert received == sorted(str(i) for i in ids)
    assert set(OutboxMessage.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert_system_consistent()


def test_job_run_delivered_twice_more_generates_the_codes_once(programme):
    # given: a code-generation job that already ran once
    campaign = make_campaign(programme)
    job = fill_pool(campaign, 50)
    task = app.tasks["plum.tasks.job_run_task"]
    # when: its task is delivered twice more
    task.run(str(job.pk))
    task.run(str(job.pk))
    # then
    assert Voucher.objects.filter(campaign=campaign).count() == 50
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
    assert_system_consistent()
