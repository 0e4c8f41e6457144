"""Celery tasks: thin, idempotent, each calls one service."""

from celery import shared_task

from plum.services.audit import audit_seal
from plum.services.idempotency import idempotency_purge
from plum.services.jobs import job_fail_stale, job_run
from plum.services.outbox import outbox_deliver, outbox_sweep


@shared_task(ignore_result=True)
def outbox_deliver_task(message_id: str, *more: str) -> None:
    """One message, or a few written by one change (an order's events) in one task."""
    for pk in (message_id, *more):
        outbox_deliver(message_id=pk)


@shared_task(ignore_result=True)
def outbox_sweep_task() -> int:
    return outbox_sweep()


@shared_task(ignore_result=True)
def audit_seal_task() -> None:
    while audit_seal() is not None:
        pass


@shared_task(ignore_result=True)
def idempotency_purge_task() -> int:
    return idempotency_purge()


@shared_task(ignore_result=True)
def job_run_task(job_id: str) -> None:
    job_run(job_id=job_id)


@shared_task(ignore_result=True)
def job_fail_stale_task() -> int:
    return job_fail_stale()
