"""Channel backends: how one rendered message reaches a provider.

A backend's `send(message)` returns a `SendResult` when the provider accepted the message, and
raises `DeliveryTransientError` (worth retrying) or `DeliveryPermanentError` (a person must
correct something) otherwise. Which backend serves a channel is a setting (docs/delivery.md):
PLUM_EMAIL_DELIVERY_BACKEND, PLUM_SMS_BACKEND, PLUM_WHATSAPP_BACKEND, dotted paths, each built
with its options (PLUM_SMS_PROVIDER, PLUM_WHATSAPP_PROVIDER). Test orders always go to the
console backend: they never reach a person."""

from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string

from plum.models import Channel
from plum.services.outbox import PermanentSendError, TransientSendError

CONSOLE_BACKEND = "orders.delivery.console.ConsoleBackend"


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: str  # the outbox message id: the provider's idempotency key
    channel: str
    to: str
    text: str
    subject: str = ""
    html: str = ""
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str = ""
    http_status: int | None = None
    response_excerpt: str = ""


class DeliveryTransientError(TransientSendError):
    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        excerpt: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(message, retry_after=retry_after)
        self.http_status = http_status
        self.excerpt = excerpt


class DeliveryPermanentError(PermanentSendError):
    def __init__(
        self, message: str, *, reason: str, http_status: int | None = None, excerpt: str = ""
    ):
        super().__init__(message)
        self.reason = reason
        self.http_status = http_status
        self.excerpt = excerpt


_SETTING = {
    Channel.EMAIL: "PLUM_EMAIL_DELIVERY_BACKEND",
    Channel.SMS: "PLUM_SMS_BACKEND",
    Channel.WHATSAPP: "PLUM_WHATSAPP_BACKEND",
}
_OPTIONS = {Channel.SMS: "PLUM_SMS_PROVIDER", Channel.WHATSAPP: "PLUM_WHATSAPP_PROVIDER"}


def backend_for(channel: str, *, is_test: bool = False):
    """A backend instance for `channel`, built from the settings on each call (cheap; a changed
    setting takes effect at once)."""
    channel = Channel(channel)
    path = CONSOLE_BACKEND if is_test else getattr(settings, _SETTING[channel], CONSOLE_BACKEND)
    options = dict(getattr(settings, _OPTIONS.get(channel, ""), None) or {})
    return import_string(path)(channel=channel, **options)
