"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.delivery import DELIVERY_TRANSITIONS, Delivery, DeliveryAttempt
from orders.models.order import ORDER_TRANSITIONS, Order
from orders.models.payouts import PAYOUT_TRANSITIONS, Payout, PayoutLine
from orders.models.rules import Event, EventRuleOutcome, RuleCondition, WorkflowRule
from orders.models.storefront import StoreListing, StoreRedeemToken
from orders.models.uploads import UPLOAD_TRANSITIONS, Upload, UploadChunk, UploadRow  # noqa: E402

__all__ = [
    "DELIVERY_TRANSITIONS",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "EventRuleOutcome",
    "ORDER_TRANSITIONS",
    "Order",
    "PAYOUT_TRANSITIONS",
    "Payout",
    "PayoutLine",
    "RuleCondition",
    "StoreListing",
    "StoreRedeemToken",
    "UPLOAD_TRANSITIONS",
    "Upload",
    "UploadChunk",
    "UploadRow",
    "WorkflowRule",
]
