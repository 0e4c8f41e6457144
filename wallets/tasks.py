from celery import shared_task

from wallets.services import points_expire_due


@shared_task(ignore_result=True)
def points_expire_due_task() -> int:
    return points_expire_due()
