"""Encryption of secrets Plum must read back (Slack/Teams webhook URLs, webhook signing
secrets): Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`.

Keys come from PLUM_ENCRYPTION_KEYS (comma-separated Fernet keys, newest first: the first
encrypts, all decrypt, so a key can be rotated); without it one key is derived from
SECRET_KEY, so changing SECRET_KEY then makes stored secrets unreadable."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadableError(Exception):
    """The ciphertext was made with a key that is no longer configured, or was altered."""


def _box() -> MultiFernet:
    keys = list(settings.PLUM_ENCRYPTION_KEYS)
    if not keys:
        digest = hashlib.sha256(f"plum.secretbox:{settings.SECRET_KEY}".encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _box().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _box().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadableError("The stored secret cannot be decrypted.") from exc


def mask_url(url: str) -> str:
    """`https://hooks.slack.com/…/X8f2` — enough to recognise, never enough to use."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/…{url[-4:]}" if "/" in rest else f"{scheme}://{host}"
