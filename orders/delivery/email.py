"""E-mail through Django's mail framework (SMTP in production, console in development), with a
text body and an HTML alternative. SMTP refusals of the recipient and 5xx replies are permanent
(a hard bounce); 4xx replies and connection trouble are transient."""

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from orders.delivery import (
    DeliveryPermanentError,
    DeliveryTransientError,
    OutgoingMessage,
    SendResult,
)


class EmailBackend:
    def __init__(self, *, channel: str, name: str = "smtp", **options):
        self.channel = channel
        self.name = name

    def send(self, message: OutgoingMessage) -> SendResult:
        # The outbox message id, as the Message-ID: a retry after a crash carries the same one,
        # so a receiving system can drop the duplicate.
        message_id_header = f"<{message.message_id}@plum.delivery>"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers={
                "Message-ID": message_id_header,
                "X-Plum-Message-Id": message.message_id,
                **message.headers,
            },
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        try:
            email.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            detail = "; ".join(
                f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
                for code, text in exc.recipients.values()
            )
            raise DeliveryPermanentError(
                f"Recipient refused: {detail}", reason="recipient_refused", excerpt=detail[:500]
            ) from exc
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
            excerpt = f"{exc.smtp_code} {text}"[:500]
            if 500 <= exc.smtp_code < 600:
                raise DeliveryPermanentError(
                    f"SMTP {excerpt}", reason="hard_bounce", excerpt=excerpt
                ) from exc
            raise DeliveryTransientError(f"SMTP {excerpt}", excerpt=excerpt) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryTransientError(f"{type(exc).__name__}: {exc}") from exc
        return SendResult(provider_message_id=message_id_header)
