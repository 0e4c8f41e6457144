"""Orders' Celery tasks, one module per part of the app; importing here registers them
(Celery's autodiscovery imports `orders.tasks`)."""

from orders.tasks import uploads  # noqa: F401
