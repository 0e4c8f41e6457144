"""Upload dispatch tasks: thin, idempotent (a chunk delivered twice issues each row once)."""

from celery import shared_task

from orders.services.uploads import (
    upload_chunk_dispatch,
    upload_dispatch_sweep,
    upload_fail_stuck_validations,
)


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def upload_chunk_dispatch_task(chunk_id: int) -> int:
    return upload_chunk_dispatch(chunk_id=chunk_id)


@shared_task(ignore_result=True)
def upload_dispatch_sweep_task() -> int:
    upload_fail_stuck_validations()
    return upload_dispatch_sweep()
