"""Every write in orders, one module per use-case family; import from here."""

from orders.services.batch import IssuanceRequest, order_issue_batch
from orders.services.delivery import (
    deliveries_queue,
    delivery_receipt_record,
    delivery_resend,
)
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
from orders.services.payouts import (
    payout_approve,
    payout_mark_paid,
    payout_period_containing,
    payouts_close,
)
from orders.services.rules import (
    condition_check,
    event_get,
    event_ingest,
    rule_match,
    rule_save,
    rule_validate,
)

__all__ = [
    "IssuanceRequest",
    "booking_id_new",
    "condition_check",
    "deliveries_queue",
    "delivery_receipt_record",
    "delivery_resend",
    "event_get",
    "event_ingest",
    "order_approve",
    "order_cancel",
    "order_issue",
    "order_issue_batch",
    "order_issue_to_recipient",
    "order_redeem_points",
    "order_reject",
    "payout_approve",
    "payout_mark_paid",
    "payout_period_containing",
    "payouts_close",
    "recipient_upsert",
    "redemption_points",
    "rule_match",
    "rule_save",
    "rule_validate",
]

from orders.services.uploads import (  # noqa: E402
    upload_chunk_dispatch,
    upload_confirm,
    upload_create_from_csv,
    upload_create_from_rows,
    upload_dispatch_sweep,
)

__all__ += [
    "upload_chunk_dispatch",
    "upload_confirm",
    "upload_create_from_csv",
    "upload_create_from_rows",
    "upload_dispatch_sweep",
]
