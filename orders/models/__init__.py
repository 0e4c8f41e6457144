"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.delivery import DELIVERY_TRANSITIONS, Delivery, DeliveryAttempt
from orders.models.order import ORDER_TRANSITIONS, Order
from orders.models.payouts import PAYOUT_TRANSITIONS, Payout, PayoutLine

__all__ = [
    "DELIVERY_TRANSITIONS",
    "Delivery",
    "DeliveryAttempt",
    "ORDER_TRANSITIONS",
    "Order",
    "PAYOUT_TRANSITIONS",
    "Payout",
    "PayoutLine",
]
