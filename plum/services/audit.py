"""The audit log: written by services in their own transaction, sealed into a hash chain by a
periodic task, verified by `manage.py verify_audit`."""

import hashlib
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from plum import context
from plum import sql as raw
from plum.actors import Actor, actor_fields
from plum.models import AuditEvent, AuditSeal, AuditSealItem

GENESIS_HASH = "0" * 64
MEMBER_OBJECT_TYPE = "plum.member"
_HASHED_FIELDS = (
    "occurred_at",
    "actor_type",
    "actor_user_id",
    "actor_client_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "programme_id",
    "changes",
    "request_id",
    "ip",
)


def _jsonable(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


@lru_cache(maxsize=256)
def ip_text(ip: str) -> str:
    """An IP address in its canonical text form (parsed once per distinct address: a batch
    writes thousands of events from one request's address)."""
    return str(ipaddress.ip_address(ip))


def event_content_hash(event: AuditEvent) -> str:
    """SHA-256 over the canonical JSON of everything an event says."""
    content = {}
    for name in _HASHED_FIELDS:
        value = getattr(event, name)
        if name == "occurred_at":
            value = value.astimezone(UTC).isoformat(timespec="microseconds")
        elif name == "ip" and value:
            value = ip_text(value)
        content[name] = value
    if event.member_id is not None:
        # Hashed only when set, so events written before the column existed keep their hash.
        content["member_id"] = event.member_id
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(canonical.encode()).hexdigest()


def audit_log(
    *,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    programme_id: int | None = None,
    changes: dict | None = None,
    member_id: int | None = None,
) -> AuditEvent:
    """Record one audited action. Call it inside the transaction that makes the change, so the
    event exists exactly when the change does. The event names the member it concerns when
    given, when the object is a member, or when the object has a `member_id` (an order, a
    voucher, a wallet): that is what a member's audit log lists."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = obj.pk if object_id is None else object_id
        if programme_id is None:
            programme_id = getattr(obj, "programme_id", None)
        if member_id is None:
            member_id = getattr(obj, "member_id", None)
    if member_id is None and object_type == MEMBER_OBJECT_TYPE and object_id not in (None, ""):
        member_id = int(object_id)
    request = context.current()
    event = raw.new(
        AuditEvent,
        occurred_at=timezone.now(),
        action=action,
        object_type=object_type or "",
        object_id="" if object_id is None else str(object_id),
        programme_id=programme_id,
        changes=_jsonable(changes or {}),
        request_id=request.request_id,
        ip=ip_text(request.ip) if request.ip else None,
        member_id=member_id,
        **actor_fields(actor),
    )
    event.hash = event_content_hash(event)
    conn = transaction.get_connection()
    batch = getattr(conn, "_plum_audit_batch", None)
    if batch is not None and batch[0] == _savepoints(conn):
        # Written at the end of the audit_batch block (not inside a savepoint of its own, which
        # could roll back without the block knowing).
        batch[1].append(event)
        return event
    # One INSERT without the ORM's per-statement compilation (plum.sql): services write
    # several events per change, on their hottest paths.
    raw.row_insert(event)
    return event


def _savepoints(conn) -> list:
    # An atomic block without a savepoint stands in the list as None.
    return [sid for sid in conn.savepoint_ids if sid is not None]


@contextmanager
def audit_batch():
    """Inside the block, the events `audit_log` records are written in one INSERT when the
    block ends without an error (in the order they were recorded), instead of one INSERT each.
    Use it inside the transaction that makes the changes, around a service that writes several
    events (the single issuance writes four); the events still commit or roll back with the
    change. Until the block ends, the events it recorded have no id and are not in the table:
    nothing inside it may read them back. An event recorded inside a savepoint opened in the
    block is written at once, as without the block. Nested blocks join the outermost one."""
    conn = transaction.get_connection()
    if getattr(conn, "_plum_audit_batch", None) is not None:
        yield
        return
    events: list[AuditEvent] = []
    conn._plum_audit_batch = (_savepoints(conn), events)
    try:
        yield
    finally:
        conn._plum_audit_batch = None
    raw.rows_insert_plain(events)


def model_update(
    *, instance: models.Model, fields: list[str], data: dict
) -> tuple[models.Model, dict]:
    """Apply `data` to the listed fields of `instance`, validate and save only what changed.
    Returns the instance and the changes as {field: [before, after]} for the audit log."""
    changes = {}
    for field in fields:
        if field not in data:
            continue
        before = getattr(instance, field)
        after = data[field]
        if before != after:
            setattr(instance, field, after)
            changes[field] = [before, after]
    if changes:
        instance.full_clean()
        if hasattr(instance, "updated_at"):
            changes_fields = [*changes, "updated_at"]
        else:
            changes_fields = list(changes)
        instance.save(update_fields=changes_fields)
    return instance, changes


def _seal_hash(prev_hash: str, items: list[tuple[int, str]]) -> str:
    digest = hashlib.sha256(prev_hash.encode())
    for event_id, event_hash in items:
        digest.update(f"{event_id}:{event_hash}\n".encode())
    return digest.hexdigest()


def audit_seal(*, batch_size: int = 5000) -> AuditSeal | None:
    """Seal up to `batch_size` unsealed events, in id order, into the next link of the chain.

    Writers never wait on this: events are sealed after they commit, and an event that commits
    late (a long transaction holding a lower id) is simply picked up by a later seal. One sealer
    at a time is ensured by a transaction-scoped advisory lock on Postgres."""
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('plum.audit_seal'))")
        unsealed = (
            AuditEvent.objects.filter(
                ~Exists(AuditSealItem.objects.filter(event_id=OuterRef("pk")))
            )
            .order_by("id")
            .values_list("id", "hash")[:batch_size]
        )
        items = list(unsealed)
        if not items:
            return None
        last = AuditSeal.objects.order_by("-id").first()
        prev_hash = last.hash if last else GENESIS_HASH
        seal = AuditSeal.objects.create(
            sealed_at=timezone.now(),
            prev_hash=prev_hash,
            hash=_seal_hash(prev_hash, items),
            event_count=len(items),
        )
        AuditSealItem.objects.bulk_create(
            [AuditSealItem(event_id=eid, seal=seal, event_hash=ehash) for eid, ehash in items]
        )
        return seal


@dataclass(frozen=True)
class AuditProblem:
    event_id: int | None
    seal_id: int | None
    message: str


def audit_verify() -> tuple[int, int, list[AuditProblem]]:
    """Recompute every event's hash and the whole seal chain. Returns (events checked, seals
    checked, problems in event order)."""
    problems: list[AuditProblem] = []
    sealed_ids_checked = 0
    prev_hash = GENESIS_HASH
    seal_count = 0
    for seal in AuditSeal.objects.order_by("id").iterator(chunk_size=500):
        seal_count += 1
        if seal.prev_hash != prev_hash:
            problems.append(
                AuditProblem(None, seal.pk, f"seal {seal.pk} does not follow the previous seal")
            )
        items = list(seal.items.order_by("event_id").values_list("event_id", "event_hash"))
        if _seal_hash(seal.prev_hash, items) != seal.hash or len(items) != seal.event_count:
            problems.append(AuditProblem(None, seal.pk, f"seal {seal.pk} does not match its items"))
        events = {e.pk: e for e in AuditEvent.objects.filter(pk__in=[i for i, _ in items])}
        for event_id, sealed_hash in items:
            sealed_ids_checked += 1
            event = events.get(event_id)
            if event is None:
                problems.append(
                    AuditProblem(
                        event_id, seal.pk, f"event {event_id} is missing (sealed in seal {seal.pk})"
                    )
                )
            elif event_content_hash(event) != sealed_hash or event.hash != sealed_hash:
                problems.append(AuditProblem(event_id, seal.pk, f"event {event_id} was altered"))
        prev_hash = seal.hash

    unsealed_checked = 0
    for event in _unsealed_events():
        unsealed_checked += 1
        if event_content_hash(event) != event.hash:
            problems.append(AuditProblem(event.pk, None, f"event {event.pk} was altered"))
    problems.sort(key=lambda p: (p.event_id is None, p.event_id or 0, p.seal_id or 0))
    return sealed_ids_checked + unsealed_checked, seal_count, problems


def _unsealed_events() -> Iterator[AuditEvent]:
    return (
        AuditEvent.objects.filter(~Exists(AuditSealItem.objects.filter(event_id=OuterRef("pk"))))
        .order_by("id")
        .iterator(chunk_size=2000)
    )
