"""Orders' data, one module per part of the app. Django finds the models through these imports."""

from orders.models.order import ORDER_TRANSITIONS, Order
from orders.models.payouts import PAYOUT_TRANSITIONS, Payout, PayoutLine

__all__ = ["ORDER_TRANSITIONS", "Order"]
__all__ += ["PAYOUT_TRANSITIONS", "Payout", "PayoutLine"]
