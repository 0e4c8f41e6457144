"""Orders' Celery tasks, one module per part of the app; importing here registers them
(Celery's autodiscovery imports `orders.tasks`)."""

from orders.tasks import payouts, uploads  # noqa: F401
