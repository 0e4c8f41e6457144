"""Orders in the admin, one module per part of the app; importing registers them."""

from orders.admin import delivery, orders, payouts, rules, uploads  # noqa: F401
