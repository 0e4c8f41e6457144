"""Outbox senders the kernel ships. Other apps register theirs in their AppConfig.ready()."""

import smtplib

from django.core.mail import EmailMultiAlternatives

from plum import roles
from plum.models import OutboxMessage
from plum.services.outbox import PermanentSendError, TransientSendError, register_sender


@register_sender("email")
def send_email(message: OutboxMessage) -> None:
    """payload: {"to": [addresses], "subject": str, "text": str, "html": optional str}."""
    payload = message.payload
    email = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["text"],
        to=payload["to"],
        headers={"X-Plum-Message-Id": str(message.pk)},
    )
    if payload.get("html"):
        email.attach_alternative(payload["html"], "text/html")
    try:
        email.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentSendError(f"Recipient refused: {exc.recipients}") from exc
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        raise TransientSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientSendError(f"{type(exc).__name__}: {exc}") from exc


@register_sender("event")
def fan_out_event(message: OutboxMessage) -> None:
    """Hand a domain event to every subscriber. A subscriber that needs its own retries
    (a webhook endpoint) enqueues its own outbox message, so one slow receiver never holds
    back the others."""
    from plum.services.events import subscribers

    for subscriber in subscribers():
        subscriber(message)


def _register_deliveries() -> None:
    """Slack/Teams notifications and webhooks: the fan-out subscriber of domain events and the
    senders of their per-target messages (plum.services.deliveries)."""
    from plum.services.deliveries import (
        NOTIFICATION_KIND,
        WEBHOOK_KIND,
        deliveries_fan_out,
        delivery_on_failure,
        delivery_send,
    )
    from plum.services.events import subscribe

    for kind in (NOTIFICATION_KIND, WEBHOOK_KIND):
        register_sender(kind, on_failure=delivery_on_failure)(delivery_send)
    subscribe(deliveries_fan_out)
    # Programme managers configure their programmes' channels and endpoints in the admin.
    roles.register_role_perms(
        roles.PROGRAMME_MANAGER,
        {
            f"plum.{action}_{model}"
            for action in ("view", "add", "change")
            for model in ("notificationchannel", "webhookendpoint")
        }
        | {"plum.view_delivery", "plum.view_deliveryattempt"},
    )


_register_deliveries()
