"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.order import ORDER_TRANSITIONS, Order
from orders.models.storefront import StoreListing, StoreRedeemToken

__all__ = ["ORDER_TRANSITIONS", "Order", "StoreListing", "StoreRedeemToken"]
