"""Support's Celery tasks: thin, idempotent, each calls one service."""

from celery import shared_task

from support.services import tickets_sla_sweep


@shared_task(ignore_result=True)
def tickets_sla_sweep_task() -> int:
    """Every minute (CELERY_BEAT_SCHEDULE): mark breaches and escalate. A second run finds
    nothing to do; parallel runs mark each breach once."""
    return tickets_sla_sweep()
