"""End to end through a real Celery worker on Redis: a service commits an outbox message, the
on-commit hook publishes to Redis, the worker process delivers it over real SMTP."""

import time

import pytest
from django.db import transaction

from plum.models import Job, OutboxMessage
from plum.services.outbox import outbox_enqueue
from tests.stubs import celery_worker


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def celery_worker_process(services_env, smtp_server):
    env = {
        **services_env,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_server.port),
    }
    with celery_worker(env) as worker:
        yield worker


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_outbox_message_is_delivered_by_a_real_worker(celery_worker_process, smtp_server):
    # given / when
    with transaction.atomic():
        message = outbox_enqueue(
            kind="email",
            payload={"to": ["meera@example.com"], "subject": "Via worker", "text": "hello"},
        )
    # then
    delivered = _wait_for(
        lambda: OutboxMessage.objects.filter(pk=message.pk, status="sent").exists()
    )
    assert delivered, "worker did not deliver in time"
    assert [m["Subject"] for m in smtp_server.messages] == ["Via worker"]
    assert OutboxMessage.objects.get(pk=message.pk).attempts == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_job_runs_on_a_real_worker_and_reports_its_progress(celery_worker_process):
    # given: the kernel's built-in seal job, which the worker process knows without test code
    from plum.actors import SYSTEM
    from plum.services.jobs import job_create

    # when
    with transaction.atomic():
        job = job_create(kind="audit.seal", programme=None, total=1, params={}, actor=SYSTEM)
    # then
    finished = _wait_for(
        lambda: Job.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).exists()
    )
    assert finished, "worker did not run the job in time"
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("succeeded", 1, 1)
    assert job.result["sealed_events"] >= 1
