"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.delivery import DELIVERY_TRANSITIONS, Delivery, DeliveryAttempt
from orders.models.order import ORDER_TRANSITIONS, Order

__all__ = [
    "DELIVERY_TRANSITIONS",
    "ORDER_TRANSITIONS",
    "Delivery",
    "DeliveryAttempt",
    "Order",
]
