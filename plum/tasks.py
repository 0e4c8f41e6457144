"""Celery tasks: thin, idempotent, each calls one service."""

import logging

from celery import shared_task

from plum.services.audit import audit_seal
from plum.services.idempotency import idempotency_purge
from plum.services.jobs import job_fail_stale, job_run
from plum.services.outbox import outbox_deliver, outbox_sweep

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def outbox_deliver_task(message_id: str, *more: str) -> None:
    """One message, or a few written by one change (an order's events) in one task. One
    message's failure does not hold back the others; the first is raised after them (the
    failed one stays pending for the outbox sweep)."""
    failed = None
    for pk in (message_id, *more):
        try:
            outbox_deliver(message_id=pk)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
            logger.exception("Outbox message %s could not be delivered", pk)
            failed = failed or exc
    if failed is not None:
        raise failed


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
