"""The payout beat task: thin and safe to run any number of times (a closed period is skipped)."""

from celery import shared_task

from orders.services import payouts_close


@shared_task(ignore_result=True)
def payouts_close_task() -> int:
    """Close the latest ended weekly and monthly periods; returns the payouts created."""
    return len(payouts_close())
