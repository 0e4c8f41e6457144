"""Every write in orders, one module per use-case family; import from here."""

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
