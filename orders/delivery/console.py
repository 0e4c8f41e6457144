"""The development backend: writes the message to the log and accepts it. The default for SMS
and WhatsApp when no provider is configured, and the backend of every test order."""

import logging

from orders.delivery import OutgoingMessage, SendResult

logger = logging.getLogger("plum.delivery.console")


class ConsoleBackend:
    def __init__(self, *, channel: str, name: str = "console", **options):
        self.channel = channel
        self.name = "console"

    def send(self, message: OutgoingMessage) -> SendResult:
        logger.warning(
            "[%s to %s] %s%s",
            message.channel,
            message.to,
            f"{message.subject}\n" if message.subject else "",
            message.text,
        )
        return SendResult(provider_message_id=f"console-{message.message_id}")
