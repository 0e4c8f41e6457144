"""Stripe-style idempotency for external POSTs, scoped to the API client.

The key row is inserted in its own committed statement before the request runs (`INSERT ...
ON CONFLICT DO NOTHING`), so a concurrent request with the same key sees it at once: the
database's unique constraint, not a read in Python, decides which request owns the key.

The key row and the request's own change commit in separate transactions, so a request can
commit its change and still fail (its database connection dropped after the commit, an error
while rendering). The key remembers the request id, and every service audits in its own
transaction with that id: a key whose request left audit events is never freed nor taken over,
so a retry cannot apply the change a second time (409 idempotency_key_applied)."""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from plum import context
from plum import sql as raw
from plum.errors import (
    IdempotencyKeyAppliedError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from plum.models import ApiClient, AuditEvent, IdempotencyKey


class IdempotentReplay(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The key already holds a completed response: send it again."""

    def __init__(self, record: IdempotencyKey):
        super().__init__(record.key)
        self.record = record


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _validate_key(key: str) -> None:
    if not 1 <= len(key) <= 255 or not all(32 < ord(ch) < 127 for ch in key):
        raise InvalidIdempotencyKeyError()


def idempotency_begin(*, client: ApiClient, key: str, fingerprint: str) -> IdempotencyKey:
    """Claim `key` for this request. Raises IdempotentReplay when a response is stored,
    IdempotencyKeyReusedError when the key came with another request, and
    IdempotencyKeyInUseError while the first request is still running."""
    _validate_key(key)
    claimed = _claim(client=client, key=key, fingerprint=fingerprint)
    if claimed is not None:
        return claimed
    record = IdempotencyKey.objects.filter(client=client, key=key).first()
    if record is None:
        # Purged between our insert and this read: claim it again.
        return idempotency_begin(client=client, key=key, fingerprint=fingerprint)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReusedError()
    if record.state == IdempotencyKey.State.COMPLETE:
        raise IdempotentReplay(record)
    abandoned_before = timezone.now() - settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT
    if record.created_at >= abandoned_before:
        raise IdempotencyKeyInUseError()
    if _applied(record):
        raise IdempotencyKeyAppliedError()
    # A request that died without releasing its key and changed nothing: take the key over,
    # atomically.
    taken = IdempotencyKey.objects.filter(
        pk=record.pk,
        state=IdempotencyKey.State.IN_FLIGHT,
        created_at__lt=abandoned_before,
        request_id=record.request_id,
    ).update(created_at=timezone.now(), request_id=_request_id())
    if taken:
        record.refresh_from_db()
        return record
    raise IdempotencyKeyInUseError()


def _claim(*, client: ApiClient, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Insert the key row, or nothing when the client's key exists: one statement
    (`ON CONFLICT DO NOTHING`), committed at once in autocommit mode, and no savepoint inside
    a caller's transaction. A concurrent insert of the same key that is not committed yet makes
    this one wait for it, as a unique violation would."""
    if connection.vendor != "postgresql":
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    client=client, key=key, fingerprint=fingerprint, request_id=_request_id()
                )
        except IntegrityError:
            return None
    now = timezone.now()
    request_id = _request_id()
    meta = IdempotencyKey._meta
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {meta.db_table} "  # noqa: S608 - the model's own names
            "(client_id, key, fingerprint, state, response_content_type, created_at, request_id) "
            "VALUES (%s, %s, %s, %s, '', %s, %s) "
            "ON CONFLICT (client_id, key) DO NOTHING RETURNING id",
            [client.pk, key, fingerprint, IdempotencyKey.State.IN_FLIGHT, now, request_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    record = raw.new(
        IdempotencyKey,
        id=row[0],
        client_id=client.pk,
        key=key,
        fingerprint=fingerprint,
        state=IdempotencyKey.State.IN_FLIGHT,
        created_at=now,
        request_id=request_id,
    )
    IdempotencyKey.client.field.set_cached_value(record, client)
    record._state.adding = False
    return record


def idempotency_complete(
    *, record: IdempotencyKey, status: int, body: bytes, content_type: str
) -> int | None:
    """Store the response under the key: the number of keys updated (0 when the request no
    longer owns it). Inside a `plum.sql.deferred_writes` block (the single issuance's
    transaction) the UPDATE joins the block's one statement at its end, and None is
    returned."""
    # Only while this request still owns the key: a request taken over after the in-flight
    # timeout must not overwrite (or, below, free) its successor's claim.
    return raw.execute(
        _COMPLETE,
        [
            IdempotencyKey.State.COMPLETE,
            status,
            bytes(body),
            content_type,
            timezone.now(),
            record.pk,
            IdempotencyKey.State.IN_FLIGHT,
            record.request_id,
        ],
    )


# idempotency_complete's conditional UPDATE, by hand: it ends every idempotent request.
_COMPLETE = (
    f"UPDATE {raw.table(IdempotencyKey)} SET {raw.column(IdempotencyKey, 'state')} = %s, "  # noqa: S608
    f"{raw.column(IdempotencyKey, 'response_status')} = %s, "
    f"{raw.column(IdempotencyKey, 'response_body')} = %s, "
    f"{raw.column(IdempotencyKey, 'response_content_type')} = %s, "
    f"{raw.column(IdempotencyKey, 'completed_at')} = %s "
    f"WHERE {raw.column(IdempotencyKey, 'id')} = %s AND {raw.column(IdempotencyKey, 'state')} = %s "
    f"AND {raw.column(IdempotencyKey, 'request_id')} = %s"
)


def idempotency_release(*, record: IdempotencyKey) -> None:
    """The request failed before producing a response worth replaying (a server error): free
    the key so the client may retry, unless the request committed a change before it failed
    (then the key stays in flight, and a retry is refused as idempotency_key_applied)."""
    if _applied(record):
        return
    IdempotencyKey.objects.filter(
        pk=record.pk, state=IdempotencyKey.State.IN_FLIGHT, request_id=record.request_id
    ).delete()


def _request_id() -> str:
    return context.current().request_id


def _applied(record: IdempotencyKey) -> bool:
    """Whether the request holding `record` committed a change: it left an audit event."""
    if not record.request_id:
        return False
    # The request id may be the caller's own X-Request-ID: only this client's events count,
    # so another client reusing the id cannot mark this key applied.
    return AuditEvent.objects.filter(
        request_id=record.request_id,
        actor_client_id=record.client_id,
        occurred_at__gte=record.created_at,
    ).exists()


def idempotency_purge(*, older_than: timedelta | None = None) -> int:
    cutoff = timezone.now() - (older_than or settings.IDEMPOTENCY_KEY_TTL)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
