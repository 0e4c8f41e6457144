"""Every write in orders, one module per use-case family; import from here."""

from orders.services.batch import IssuanceRequest, order_issue_batch
from orders.services.issuance import (
    booking_id_new,
    order_approve,
    order_cancel,
    order_issue,
    order_issue_to_recipient,
    order_redeem_points,
    order_reject,
    recipient_upsert,
    redemption_points,
)

__all__ = [
    "IssuanceRequest",
    "order_issue_batch",
    "booking_id_new",
    "order_approve",
    "order_cancel",
    "order_issue",
    "order_issue_to_recipient",
    "order_redeem_points",
    "order_reject",
    "recipient_upsert",
    "redemption_points",
]
