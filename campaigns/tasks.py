from celery import shared_task

from campaigns.services.vouchers import vouchers_expire_lapsed


@shared_task(ignore_result=True)
def vouchers_expire_lapsed_task() -> int:
    return vouchers_expire_lapsed()
