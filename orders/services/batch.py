"""Batch issuance: up to 1,000 rewards in one request and one transaction, set-based.

The batch gives the answers that many single issuances (`order_issue_to_recipient`) run one
after another in the batch's order would give, with one difference: when a budget runs out in
the middle of a campaign's items, the items after the first refused one are refused too, even
a cheaper one that would still fit (the counters grant the longest prefix of the campaign's
items; with one value per campaign, the usual case, that is exactly the sequential answer).
Its work does not grow in statements with the number of items: recipients are checked in
Python, members upserted in bulk, each campaign's counters claimed with one conditional
UPDATE, pooled codes with one SKIP LOCKED claim per (campaign, face value), and orders,
vouchers, audit events and outbox events bulk-inserted.

Invariants (the same as the single path, see orders/services/issuance.py and
campaigns/services/vouchers.py):
- a campaign's issued_count / issued_value equal its counted vouchers afterwards
  (`campaign_counters_from_vouchers`), and never pass max_rewards / budget: one conditional
  UPDATE per campaign grants min(requested, remaining) with the campaign row locked by that
  same statement, and the CHECK constraints refuse anything else;
- per-member caps: one INSERT ... ON CONFLICT DO UPDATE ... WHERE issued + n <= cap per
  campaign; a member that statement refuses (a concurrent issue got there first) has all of
  its items refused member_cap_reached and what they took given back;
- each item is accepted or refused on its own, with the single path's error codes. A refused
  item leaves no order, voucher, counter, audit or outbox row. Its recipient, when valid, is
  still upserted (the batch upserts members before it claims counters): contact details are
  not a reward, and the upsert is audited;
- held campaigns (approval_mode manual) give pending_approval orders and take no counter;
  test-mode batches make test orders with test codes and touch no live counter.

Lock order (docs/concurrency.md): members (upsert) -> campaigns, in id order (counter UPDATE)
-> campaign-member counters -> pooled vouchers (SKIP LOCKED, never waits), the issuing order of
the single path, so a batch and single issuances cannot deadlock.

Cost per item (the batch is meant to be much cheaper per reward than single issuances):
- no model instance is constructed per row: rows are built as columns (plum.bulk
  `columns_insert`: one array literal per column, constants sent once) and the orders,
  vouchers and members returned are `instance_for` objects with their related rows cached;
- order and voucher ids are drawn ahead (one `ids_next` statement), booking ids and codes
  before the transaction; a unique collision is skipped by ON CONFLICT DO NOTHING and only
  that row drawn again (no savepoint);
- each item's audit entries (with the hash `event_content_hash` gives) and order events are
  encoded before any campaign row is locked, so that the lock, held to the commit, covers the
  set-based statements and little Python; what the claim changes (a pooled voucher, a redrawn
  booking id) is rebuilt after it.
"""

import hashlib
import json
import os
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from json.encoder import encode_basestring_ascii

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from campaigns.codes import ALPHABET, CodeGenerator
from campaigns.errors import (
    BudgetExhaustedError,
    CampaignExhaustedError,
    CampaignNotActiveError,
    MemberCapReachedError,
    PoolExhaustedError,
)
from campaigns.models import MONEY_MAX, Campaign, CampaignMemberCounter, Voucher, VoucherStatus
from campaigns.services.vouchers import _expiry_for
from orders.errors import BatchTooLargeError, RecipientInvalidError
from orders.models import Order
from orders.services.delivery import deliveries_queue
from orders.services.issuance import BOOKING_PREFIX, RECIPIENT_FIELDS
from plum import context
from plum.actors import Actor, actor_fields
from plum.bulk import Same, columns_insert, ids_next, instance_for
from plum.errors import InvalidInputError, PlumError
from plum.models import AuditEvent, Member, OutboxMessage
from plum.services.audit import ip_text
from plum.services.events import EVENT_KIND
from plum.services.outbox import outbox_schedule_sweeps
from plum.services.programmes import MEMBER_FIELDS

MAX_BATCH = 1000
ATTEMPTS = 5
S = VoucherStatus


@dataclass(frozen=True)
class IssuanceRequest:
    """One item of a batch, as the API validated its wire format."""

    campaign: Campaign
    recipient: dict
    value: Decimal | None = None
    reference: str = ""


@dataclass(slots=True)
class _Item:
    index: int
    campaign: Campaign
    external_id: str
    data: dict
    value: Decimal
    reference: str
    member: Member | None = None
    voucher: Voucher | None = None
    pooled: bool = False
    held: bool = False
    # drawn ahead: the order's id and booking id, and the id of its voucher when generated
    order_id: int = 0
    booking_id: str = ""
    voucher_id: int | None = None
    # the order's audit entries and events, built before the campaign is locked, for the
    # voucher id they assume (None: build them after the claim)
    prebuilt: tuple | None = None


# --- plain checks (no database) ------------------------------------------------------------

_RECIPIENT_SET = frozenset(RECIPIENT_FIELDS)
_MEMBER_FIELD = {name: Member._meta.get_field(name) for name in RECIPIENT_FIELDS}


def recipient_check(recipient: dict) -> tuple[str, dict]:
    """(external_id, contact details) of a recipient, checked by the member model's field rules
    without touching the database; `invalid_recipient` naming the wrong fields otherwise."""
    data = {k: v for k, v in recipient.items() if k in RECIPIENT_FIELDS}
    external_id = (data.pop("external_id", "") or "").strip()
    if not external_id:
        raise RecipientInvalidError(fields={"recipient.external_id": ["This field is required."]})
    try:
        Member(external_id=external_id, **data).clean_fields(exclude=["programme", "user"])
    except ValidationError as exc:
        raise RecipientInvalidError(
            fields={f"recipient.{name}": errors for name, errors in exc.message_dict.items()}
        ) from exc
    return external_id, data


def recipient_check_fast(recipient) -> tuple[str, dict] | None:
    """`recipient_check`'s answer for a recipient it accepts, without building a Member: each
    given value goes through its model field's own `clean` (what `clean_fields` runs: choices,
    validators, max_length), blank values skipped as `clean_fields` skips them. None for
    anything else (a value that is not a string, one a field refuses): `recipient_check` then
    decides, and words the refusal."""
    if type(recipient) is not dict:
        return None
    data = {}
    for k, v in recipient.items():
        if k in _RECIPIENT_SET:
            if type(v) is not str:
                return None
            data[k] = v
    external_id = data.pop("external_id", "").strip()
    if not external_id:
        return None
    try:
        _clean("external_id", external_id)
        for name, v in data.items():
            if v:
                _clean(name, v)
    except ValidationError:
        return None
    return external_id, data


def _member_rules(name: str):
    """What `Field.clean(value, instance)` checks of a non-empty string for the member's field
    `name` (to_python is the identity on a string; validate() checks the choices, and blank
    and null, which a non-empty string passes; then every validator), without its calls."""
    f = _MEMBER_FIELD[name]
    choices = frozenset(str(key) for key, _ in f.flatchoices) if f.choices else None
    return choices, list(f.validators)


_RULES = {name: _member_rules(name) for name in RECIPIENT_FIELDS}


def _clean(name: str, value: str) -> None:
    choices, validators = _RULES[name]
    if choices is not None and value not in choices:
        raise ValidationError("Not a choice.")
    for validator in validators:
        validator(value)


def value_check(campaign: Campaign, value: Decimal | None) -> Decimal:
    """The item's face value: the campaign's, or one its reward is sold at."""
    value = campaign.value if value is None else value
    if value != campaign.value and not campaign.reward.accepts_value(value):
        raise InvalidInputError(fields={"value": ["The reward is not sold at this value."]})
    return value


def booking_ids_new(n: int) -> list[str]:
    """`booking_id_new` (orders.services.issuance) n times, from one draw of random bytes:
    PLM-XXXX-XXXX, each character uniform over the code alphabet (rejection sampling)."""
    size = len(ALPHABET)
    limit = 256 - 256 % size
    chars: list[str] = []
    need = 8 * n
    while len(chars) < need:
        chars.extend(ALPHABET[b % size] for b in secrets.token_bytes(need + 64) if b < limit)
    out = []
    for i in range(n):
        body = "".join(chars[8 * i : 8 * i + 8])
        out.append(f"{BOOKING_PREFIX}-{body[:4]}-{body[4:]}")
    return out


def _uuid_texts(n: int) -> list[str]:
    """n version-4 UUIDs (what str(uuid4()) gives) from one read of the OS's random bytes."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


# --- writes collected for the end of the transaction ---------------------------------------

_SEP = (",", ":")
# What json.dumps(..., sort_keys=True, separators=_SEP) uses, built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=_SEP)
_quote = encode_basestring_ascii  # json.dumps(a_str), ensure_ascii as its default


class _Audit:
    """The audit events of the batch, as columns for one INSERT: the rows `audit_log` writes,
    with the hash `event_content_hash` gives (canonical JSON, sorted keys, SHA-256), built
    without a model instance or a row object per event. The events of one batch share the
    transaction's time, actor and request."""

    def __init__(self, actor: Actor, now):
        request = context.current()
        actor_cols = {
            "actor_type": None,
            "actor_user_id": None,
            "actor_client_id": None,
            "actor_label": None,
        } | actor_fields(actor)
        self.now = now
        self.fixed = {
            **actor_cols,
            "request_id": request.request_id,
            "ip": ip_text(request.ip) if request.ip else None,
        }
        common = {
            **self.fixed,
            "occurred_at": now.astimezone(UTC).isoformat(timespec="microseconds"),
        }
        dumps = json.dumps
        # The canonical JSON's keys, sorted: the fixed ones are encoded once.
        self._parts = {k: dumps(v) for k, v in common.items()}
        # the events' occurred_at in the outbox payloads: now.isoformat(), as event_emit has it
        self.occurred_at_json = dumps(now.isoformat())
        names = ("action", "object_type", "object_id", "programme_id", "changes", "hash")
        self.columns: dict[str, list] = {k: [] for k in (*names, "member_id")}
        self._columns = list(self.columns.values())  # in `entry`'s order

    def add(
        self, action, object_type, object_id, programme_id, member_id, changes, changes_json=None
    ) -> None:
        self.append(
            self.entry(
                action, object_type, object_id, programme_id, member_id, changes, changes_json
            )
        )

    def entry(
        self, action, object_type, object_id, programme_id, member_id, changes, changes_json=None
    ) -> tuple:
        """One event's own columns and hash, to `append` (now or later); `changes_json`, when
        given, is `changes` encoded as the hash encodes it (json.dumps(sort_keys=True,
        separators=(",", ":")))."""
        if changes_json is None:
            changes_json = _CANONICAL.encode(changes)
        p = self._parts
        # json.dumps(content, sort_keys=True, separators=(",", ":")) of the hashed fields
        # (plum.services.audit._HASHED_FIELDS, member_id when set), key by key in sorted order;
        # strings encoded by json's own encode_basestring_ascii, ints by int.__repr__.
        canonical = (
            '{"action":' + _quote(action)
            + ',"actor_client_id":' + p["actor_client_id"]
            + ',"actor_label":' + p["actor_label"]
            + ',"actor_type":' + p["actor_type"]
            + ',"actor_user_id":' + p["actor_user_id"]
            + ',"changes":' + changes_json
            + ',"ip":' + p["ip"]
            + ("" if member_id is None else ',"member_id":' + int.__repr__(member_id))
            + ',"object_id":' + _quote(object_id)
            + ',"object_type":' + _quote(object_type)
            + ',"occurred_at":' + p["occurred_at"]
            + ',"programme_id":' + ("null" if programme_id is None else int.__repr__(programme_id))
            + ',"request_id":' + p["request_id"]
            + "}"
        )  # fmt: skip
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return action, object_type, object_id, programme_id, changes_json, digest, member_id

    def append(self, entry: tuple) -> None:
        for column, value in zip(self._columns, entry, strict=True):
            column.append(value)

    def insert(self) -> None:
        n = len(self.columns["hash"])
        if not n:
            return
        columns = {
            **self.columns,
            **{k: Same(v, n) for k, v in self.fixed.items()},
            "occurred_at": Same(self.now, n),
        }
        columns_insert(AuditEvent, columns, json_dumped=True)


@dataclass
class _Outbox:
    """Order events for the outbox, as columns for one INSERT (what `event_emit` writes)."""

    programme_id: list = field(default_factory=list)
    payload: list = field(default_factory=list)

    def insert(self, now) -> int:
        n = len(self.payload)
        if n:
            columns_insert(
                OutboxMessage,
                {
                    "id": _uuid_texts(n),
                    "kind": Same(EVENT_KIND, n),
                    "programme_id": self.programme_id,
                    "payload": self.payload,
                    "next_attempt_at": Same(now, n),
                    "max_attempts": Same(settings.OUTBOX_MAX_ATTEMPTS, n),
                },
                json_dumped=True,
            )
        return n


# --- the service ---------------------------------------------------------------------------


def order_issue_batch(
    *,
    requests: list[IssuanceRequest],
    source: str,
    actor: Actor,
    is_test: bool = False,
) -> list[Order | PlumError]:
    """Issue every request independently, in one durable transaction; one result per request,
    in order: the order (completed with its voucher, or pending approval) or the error that
    refused it. See the module docstring for the invariants."""
    if len(requests) > MAX_BATCH:
        raise BatchTooLargeError(limit=MAX_BATCH, given=len(requests))
    if source not in Order.Source.values:
        raise InvalidInputError(fields={"source": [f"Unknown source {source!r}."]})
    results: list[Order | PlumError | None] = [None] * len(requests)
    items: list[_Item] = []
    for index, request in enumerate(requests):
        campaign = request.campaign
        try:
            checked = recipient_check_fast(request.recipient) or recipient_check(request.recipient)
            value = (
                campaign.value if request.value is None else value_check(campaign, request.value)
            )
        except PlumError as exc:
            results[index] = exc
            continue
        items.append(_Item(index, campaign, checked[0], checked[1], value, request.reference or ""))
    if not items:
        return results
    # Drawn before the transaction: booking ids, and codes for the campaigns that generate.
    booking_ids = booking_ids_new(len(items))
    generating: dict[int, int] = defaultdict(int)
    for item in items:
        if item.campaign.code_source != Campaign.CodeSource.POOL:
            generating[item.campaign.pk] += 1
    with transaction.atomic(durable=True):
        now = timezone.now()
        audit = _Audit(actor, now)
        _members_upsert(items, audit=audit, now=now)
        order_ids, voucher_ids = ids_next((Order, len(items)), (Voucher, sum(generating.values())))
        voucher_id = iter(voucher_ids)
        for item, order_id, booking_id in zip(items, order_ids, booking_ids, strict=True):
            item.order_id, item.booking_id = order_id, booking_id
            if item.campaign.code_source != Campaign.CodeSource.POOL:
                item.voucher_id = next(voucher_id)
        # Everything an accepted item writes is built now, before any campaign row is locked
        # (the lock is held until the commit): what the claim changes is rebuilt after it.
        for item in items:
            item.prebuilt = _order_writes_prebuild(
                item, audit=audit, source=source, is_test=is_test
            )
        accepted = _claim(items, results, is_test=is_test)
        orders = _orders_insert(accepted, source=source, is_test=is_test, now=now)
        outbox = _Outbox()
        writes = [
            _order_writes(item, audit=audit, source=source, is_test=is_test) for item in accepted
        ]
        for voucher_entry, _, _, _ in writes:
            if voucher_entry is not None:
                audit.append(voucher_entry)
        for (_, order_entry, created, second), item, order in zip(
            writes, accepted, orders, strict=True
        ):
            results[item.index] = order
            audit.append(order_entry)
            outbox.programme_id += (item.campaign.programme_id, item.campaign.programme_id)
            outbox.payload += (created, second)
        audit.insert()
        events = outbox.insert(now)
        # Each completed order's voucher goes to its member (orders.services.delivery).
        completed = [o for o in orders if o.status == Order.Status.COMPLETED]
        if completed:
            # Fresh rows: queued as they are, and each order's delivery_status set on it
            # (failed: no address), so the rendered results show what the queueing decided.
            deliveries_queue(orders=completed, actor=actor, fresh=True)
        if events:
            transaction.on_commit(lambda: outbox_schedule_sweeps(events))
    return results


# --- members -------------------------------------------------------------------------------

_MEMBER_NAMES = [f.attname for f in Member._meta.concrete_fields]


def _member(values: dict) -> Member:
    return instance_for(Member, values)


def _members_upsert(items: list[_Item], *, audit: _Audit, now) -> None:
    """Create the members the batch names that do not exist and update the contact details
    given, in a constant number of statements per programme: read the existing, insert the
    missing (ON CONFLICT DO NOTHING: a concurrent upsert may win, and its row is then read and
    updated like an existing one), and one bulk UPDATE per set of changed fields. Several items
    for one member merge their details in batch order (the later wins), as that many single
    upserts would."""
    by_programme: dict[int, dict[str, dict]] = defaultdict(dict)
    for item in items:
        merged = by_programme[item.campaign.programme_id].setdefault(item.external_id, {})
        merged.update(item.data)
    members: dict[tuple[int, str], Member] = {}
    for programme_id, wanted in sorted(by_programme.items()):
        existing = _members_read(programme_id, list(wanted))
        missing = sorted(eid for eid in wanted if eid not in existing)
        if missing:
            created = _members_insert(programme_id, missing, wanted, now)
            for eid in missing:
                member = created.get(eid)
                if member is None:
                    continue
                data = wanted[eid]
                changes = {"external_id": [None, eid], **{f: [None, v] for f, v in data.items()}}
                audit.add(
                    "member.create", "plum.member", str(member.id), programme_id, member.id, changes
                )
                members[(programme_id, eid)] = member
            raced = [eid for eid in missing if eid not in created]
            if raced:
                existing.update(_members_read(programme_id, raced))
        stale = [
            m.pk
            for eid, m in existing.items()
            if any(getattr(m, f) != v for f, v in wanted[eid].items())
        ]
        if stale:
            # The members to update, locked in id order (the per-field-set UPDATEs below would
            # otherwise lock them in an order two batches could cross) and read again under the
            # lock: the changes and their audited "before" values are the committed ones.
            existing.update(_members_read(programme_id, pks=stale))
        changed: dict[tuple[str, ...], list[Member]] = defaultdict(list)
        for eid, member in existing.items():
            changes = {
                f: [getattr(member, f), v]
                for f, v in wanted[eid].items()
                if getattr(member, f) != v
            }
            if changes:
                for f, (_, v) in changes.items():
                    setattr(member, f, v)
                member.updated_at = now
                changed[tuple(sorted(changes))].append(member)
                audit.add(
                    "member.update", "plum.member", str(member.id), programme_id, member.id, changes
                )
            members[(programme_id, eid)] = member
        for fields, group in sorted(changed.items()):
            Member.objects.bulk_update(
                sorted(group, key=lambda m: m.pk), [*fields, "updated_at"], batch_size=1000
            )
    for item in items:
        item.member = members[(item.campaign.programme_id, item.external_id)]


def _members_read(
    programme_id: int, external_ids: list[str] | None = None, *, pks: list[int] | None = None
) -> dict[str, Member]:
    """The programme's members by external id, or (`pks`) those members locked in id order."""
    if pks is None:
        rows = Member.objects.filter(programme_id=programme_id, external_id__in=external_ids)
    else:
        rows = (
            Member.objects.select_for_update(no_key=True)
            .filter(programme_id=programme_id, pk__in=pks)
            .order_by("pk")
        )
    return {
        values["external_id"]: _member(values)
        for values in (
            dict(zip(_MEMBER_NAMES, row, strict=True)) for row in rows.values_list(*_MEMBER_NAMES)
        )
    }


def _members_insert(programme_id: int, external_ids: list[str], wanted: dict, now) -> dict:
    """INSERT ... ON CONFLICT DO NOTHING, with ids drawn ahead: the members this statement
    created, by external id (one that a concurrent upsert created first is not among them)."""
    (ids,) = ids_next((Member, len(external_ids)))
    n = len(external_ids)
    columns = {
        "id": ids,
        "programme_id": Same(programme_id, n),
        "external_id": external_ids,
        **{f: [wanted[eid].get(f, "") for eid in external_ids] for f in MEMBER_FIELDS},
        "user_id": Same(None, n),
        "created_at": Same(now, n),
        "updated_at": Same(now, n),
    }
    returned = columns_insert(
        Member, columns, returning=("id",), conflict=("programme", "external_id")
    )
    inserted = {row[0] for row in returned}
    created = {}
    for i, pk in enumerate(ids):
        if pk in inserted:
            created[external_ids[i]] = _member({name: columns[name][i] for name in _MEMBER_NAMES})
    return created


# --- claiming: counters, member caps, codes ----------------------------------------------


def _claim(items: list[_Item], results: list, *, is_test: bool) -> list[_Item]:
    """Decide every item, campaign by campaign in id order: returns the accepted items (held
    or with their voucher), in batch order; the refused get their error in `results`."""
    now = timezone.now()
    by_campaign: dict[int, list[_Item]] = defaultdict(list)
    campaigns: dict[int, Campaign] = {}
    for item in items:
        by_campaign[item.campaign.pk].append(item)
        campaigns[item.campaign.pk] = item.campaign
    issuing = set(
        Campaign.objects.issuing(now).filter(pk__in=list(campaigns)).values_list("pk", flat=True)
    )
    capped = [
        pk
        for pk, c in campaigns.items()
        if c.per_member_cap is not None and not is_test and c.approval_mode != "manual"
    ]
    issued_to: dict[tuple[int, int], int] = {}
    if capped:
        issued_to = {
            (c, m): n
            for c, m, n in CampaignMemberCounter.objects.filter(
                campaign_id__in=capped,
                member_id__in={i.member.pk for pk in capped for i in by_campaign[pk]},
            ).values_list("campaign_id", "member_id", "issued")
        }
    # Generated codes, drawn before any campaign row is locked (one draw per campaign).
    draws: dict[int, list[str]] = {}
    for pk, mine in by_campaign.items():
        campaign = campaigns[pk]
        if campaign.code_source != Campaign.CodeSource.POOL:
            generator = CodeGenerator(prefix=campaign.code_prefix, length=campaign.code_length)
            draws[pk] = generator.generate(len(mine))
    accepted: list[_Item] = []
    for pk in sorted(by_campaign):
        campaign, mine = campaigns[pk], by_campaign[pk]
        if pk not in issuing and (is_test or campaign.approval_mode == "manual"):
            _refuse(results, mine, CampaignNotActiveError())
            continue
        if campaign.approval_mode == Campaign.ApprovalMode.MANUAL:
            for item in mine:
                item.held = True
            accepted.extend(mine)
            continue
        granted = mine if is_test else _claim_counters(campaign, mine, results, issued_to, now)
        accepted.extend(
            _claim_codes(campaign, granted, results, is_test=is_test, now=now, codes=draws.get(pk))
        )
    accepted.sort(key=lambda i: i.index)
    return accepted


def _refuse(results: list, items: list[_Item], error: PlumError) -> None:
    for item in items:
        results[item.index] = error


def _claim_counters(
    campaign: Campaign, items: list[_Item], results: list, issued_to: dict, now
) -> list[_Item]:
    """Count the items against the campaign's limits, in batch order: the per-member cap
    first (from the counters read before, confirmed by the conditional upsert), then one
    conditional UPDATE that grants the longest prefix of the rest that max_rewards and the
    budget allow."""
    cap = campaign.per_member_cap
    candidates = items
    if cap is not None:
        candidates, seen = [], dict(issued_to)
        for item in items:
            key = (campaign.pk, item.member.id)
            if seen.get(key, 0) >= cap:
                results[item.index] = MemberCapReachedError()
            else:
                seen[key] = seen.get(key, 0) + 1
                candidates.append(item)
    if not candidates:
        return []
    granted, state = _counters_update(campaign, [i.value for i in candidates], now)
    if state is None:
        _refuse(results, candidates, CampaignNotActiveError())
        return []
    count, value, max_rewards, budget = state
    if granted < len(candidates):
        if max_rewards is not None and count >= max_rewards:
            error: PlumError = CampaignExhaustedError()
        else:
            error = BudgetExhaustedError.left(budget, value)
        _refuse(results, candidates[granted:], error)
    kept = candidates[:granted]
    if cap is not None and kept:
        kept = _claim_member_caps(campaign, kept, results)
    return kept


def _counters_update(campaign: Campaign, values: list[Decimal], now):
    """Take the longest prefix of `values` that the campaign's max_rewards and budget still
    allow, in one statement: (granted, (issued_count, issued_value, max_rewards, budget) after
    it), or (0, None) when the campaign is not issuing. On Postgres the CTE locks the row
    (waiting for a concurrent issue to commit, then reading its result) and the UPDATE adds
    what the lock's row allows: the prefix sums are increasing, so "sum <= budget - issued"
    and "position <= max - count" select a prefix and max(sum) is its value."""
    table = Campaign._meta.db_table
    cumulative, total = [], Decimal("0")
    for value in values:
        total += value
        cumulative.append(total)
    if connection.vendor == "postgresql":
        sql = f"""
            WITH cur AS (
                SELECT id, issued_count, issued_value, max_rewards, budget FROM {table}
                WHERE id = %(id)s AND status = 'active' AND starts_at <= %(now)s
                  AND (ends_at IS NULL OR ends_at > %(now)s)
                FOR NO KEY UPDATE
            ), granted AS (
                SELECT cur.id, count(u.s) AS n, coalesce(max(u.s), 0) AS v
                FROM cur LEFT JOIN unnest(%(cum)s::numeric[]) WITH ORDINALITY AS u(s, i)
                  ON (cur.max_rewards IS NULL OR u.i <= cur.max_rewards - cur.issued_count)
                 AND u.s <= COALESCE(cur.budget, %(ceiling)s) - cur.issued_value
                GROUP BY cur.id
            )
            UPDATE {table} c
            SET issued_count = c.issued_count + g.n, issued_value = c.issued_value + g.v
            FROM granted g WHERE c.id = g.id
            RETURNING g.n, c.issued_count, c.issued_value, c.max_rewards, c.budget
        """  # noqa: S608 - the table name is the model's, the values are parameters
        with connection.cursor() as cursor:
            cursor.execute(
                sql, {"id": campaign.pk, "now": now, "cum": cumulative, "ceiling": MONEY_MAX}
            )
            row = cursor.fetchone()
        if row is None:
            return 0, None
        return row[0], tuple(row[1:])
    # Elsewhere (SQLite, one writer at a time): read, then compare-and-set.
    for _ in range(ATTEMPTS):
        current = (
            Campaign.objects.issuing(now)
            .filter(pk=campaign.pk)
            .values_list("issued_count", "issued_value", "max_rewards", "budget")
            .first()
        )
        if current is None:
            return 0, None
        count, issued, max_rewards, budget = current
        granted = 0
        for position, total in enumerate(cumulative, start=1):
            if max_rewards is not None and position > max_rewards - count:
                break
            if total > (MONEY_MAX if budget is None else budget) - issued:
                break
            granted = position
        value = cumulative[granted - 1] if granted else Decimal("0")
        if Campaign.objects.filter(pk=campaign.pk, issued_count=count, issued_value=issued).update(
            issued_count=F("issued_count") + granted, issued_value=F("issued_value") + value
        ):
            return granted, (count + granted, issued + value, max_rewards, budget)
    raise RuntimeError(f"Campaign {campaign.pk}'s counters kept changing under the batch")


def _claim_member_caps(campaign: Campaign, items: list[_Item], results: list) -> list[_Item]:
    """One conditional upsert of the campaign-member counters: each member's row takes all of
    its items or none (the WHERE refuses a row that would pass the cap). A member refused here
    lost a race to a concurrent issue: its items are refused and their counts given back."""
    wanted: dict[int, int] = defaultdict(int)
    for item in items:
        wanted[item.member.id] += 1
    table = CampaignMemberCounter._meta.db_table
    rows = sorted(wanted.items())
    placeholders = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [p for member_id, n in rows for p in (campaign.pk, member_id, n)]
    sql = (
        f"INSERT INTO {table} (campaign_id, member_id, issued) VALUES {placeholders} "  # noqa: S608
        f"ON CONFLICT (campaign_id, member_id) DO UPDATE "
        f"SET issued = {table}.issued + excluded.issued "
        f"WHERE {table}.issued + excluded.issued <= %s RETURNING member_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, campaign.per_member_cap])
        confirmed = {row[0] for row in cursor.fetchall()}
    kept, lost = [], []
    for item in items:
        (kept if item.member.id in confirmed else lost).append(item)
    if lost:
        _refuse(results, lost, MemberCapReachedError())
        _release(campaign, lost, member_counted=False)
    return kept


def _release(campaign: Campaign, items: list[_Item], *, member_counted: bool) -> None:
    """Give back what `items` took from the campaign's counters (and, when counted, from the
    member counters): one UPDATE for the campaign, one for its member counters."""
    Campaign.objects.filter(pk=campaign.pk).update(
        issued_count=F("issued_count") - len(items),
        issued_value=F("issued_value") - sum(i.value for i in items),
    )
    if member_counted and campaign.per_member_cap is not None:
        per_member: dict[int, int] = defaultdict(int)
        for item in items:
            per_member[item.member.id] += 1
        CampaignMemberCounter.objects.filter(
            campaign=campaign, member_id__in=list(per_member)
        ).update(
            issued=F("issued")
            - Case(*[When(member_id=m, then=Value(n)) for m, n in sorted(per_member.items())])
        )


_VOUCHER_NAMES = [f.attname for f in Voucher._meta.concrete_fields]
_STAMPS = ("created_at", "updated_at")


def _rows_of(columns: dict, rows: list[int], n: int) -> dict:
    """The columns of `rows` (all n: the columns themselves), without the auto_now stamps."""
    if len(rows) == n:
        return {k: v for k, v in columns.items() if k not in _STAMPS}
    return {k: [v[i] for i in rows] for k, v in columns.items() if k not in _STAMPS}


def _stamps_copy(part: dict, columns: dict, rows: list[int]) -> None:
    """The auto_now stamps `columns_insert` gave the rows of `part` (rows `rows` of
    `columns`), copied into `columns`."""
    for name in _STAMPS:
        target = columns[name]
        for i, stamp in zip(rows, part[name], strict=True):
            target[i] = stamp


def _claim_codes(
    campaign: Campaign,
    items: list[_Item],
    results: list,
    *,
    is_test: bool,
    now,
    codes: list[str] | None,
) -> list[_Item]:
    """A voucher for each item: pooled codes first (one SELECT ... FOR UPDATE SKIP LOCKED
    LIMIT n per face value, the oldest first, as the single path), then codes generated in
    bulk (`codes`, drawn before, and the items' voucher ids); a pool-only campaign refuses what its
    pool cannot cover (pool_exhausted) and gives those items' counts back."""
    if not items:
        return []
    expires_at = _expiry_for(campaign, now)
    by_value: dict[Decimal, list[_Item]] = defaultdict(list)
    for item in items:
        by_value[item.value].append(item)
    claimed: list[Voucher] = []
    uncovered: list[_Item] = []
    for value, group in sorted(by_value.items()):
        pooled = list(
            Voucher.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(campaign=campaign, status=S.AVAILABLE, is_test=is_test, face_value=value)
            .order_by("id")
            .values_list(*_VOUCHER_NAMES)[: len(group)]
        )
        for item, row in zip(group, pooled, strict=False):
            voucher = instance_for(Voucher, dict(zip(_VOUCHER_NAMES, row, strict=True)))
            expiries = [e for e in (voucher.expires_at, expires_at) if e is not None]
            voucher.status = S.ACTIVE
            voucher.member_id = item.member.id
            voucher.issued_at = now
            voucher.expires_at = min(expiries) if expiries else None
            voucher.balance = voucher.face_value
            voucher.updated_at = now
            item.voucher = voucher
            item.pooled = True
            claimed.append(voucher)
        uncovered.extend(group[len(pooled) :])
    _pooled_update(claimed, now)
    if uncovered and campaign.code_source == Campaign.CodeSource.POOL:
        _refuse(results, uncovered, PoolExhaustedError())
        if not is_test:
            _release(campaign, uncovered, member_counted=True)
        uncovered_ids = {i.index for i in uncovered}
        return [i for i in items if i.index not in uncovered_ids]
    if uncovered:
        _vouchers_generate(
            campaign,
            uncovered,
            is_test=is_test,
            expires_at=expires_at,
            now=now,
            codes=codes[: len(uncovered)],
            ids=[item.voucher_id for item in uncovered],
        )
    return items


def _pooled_update(vouchers: list[Voucher], now) -> None:
    """The claimed pool codes become the members' active vouchers: one UPDATE ... FROM
    unnest(arrays) (bulk_update elsewhere)."""
    if not vouchers:
        return
    if connection.vendor != "postgresql":
        Voucher.objects.bulk_update(
            vouchers,
            ["status", "member", "issued_at", "expires_at", "balance", "updated_at"],
            batch_size=1000,
        )
        return
    table = Voucher._meta.db_table
    sql = (
        f"UPDATE {table} AS v SET status = 'active', member_id = x.member_id, "  # noqa: S608
        "issued_at = %s, expires_at = x.expires_at, balance = v.face_value, updated_at = %s "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[]) "
        "AS x(id, member_id, expires_at) "
        "WHERE v.id = x.id AND v.status = 'available'"
    )
    params = [
        now,
        now,
        [v.pk for v in vouchers],
        [v.member_id for v in vouchers],
        [v.expires_at for v in vouchers],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != len(vouchers):  # cannot happen: the rows are locked
            raise RuntimeError("A claimed pool code left the pool under its lock")


def _insert_redrawing(model, columns: dict, n: int, *, unique: str, redraw) -> None:
    """Insert the `n` rows of `columns` (ids drawn ahead) ON CONFLICT (`unique`) DO NOTHING;
    the rows that collided (with a stored row or with each other) get a new value from
    `redraw(indexes)` and go again, alone, with no savepoint. Their timestamps are filled in
    `columns` from the rows written."""
    pending = list(range(n))
    columns["created_at"] = [None] * n
    columns["updated_at"] = [None] * n
    for _ in range(ATTEMPTS):
        part = _rows_of(columns, pending, n)
        returned = columns_insert(model, part, returning=("id",), conflict=(unique,))
        _stamps_copy(part, columns, pending)
        inserted = {row[0] for row in returned}
        pending = [i for i in pending if columns["id"][i] not in inserted]
        if not pending:
            return
        redraw(pending)
    raise RuntimeError(f"Could not draw a unique {model.__name__} {unique} in {ATTEMPTS} attempts")


def _vouchers_generate(
    campaign: Campaign, items: list[_Item], *, is_test, expires_at, now, codes, ids
) -> None:
    """Insert the items' vouchers with the codes drawn, ON CONFLICT (code) DO NOTHING: a code
    taken already (60+ random bits: rare) is drawn again for its row alone, no savepoint."""
    generator = CodeGenerator(prefix=campaign.code_prefix, length=campaign.code_length)
    n = len(items)
    values = [item.value for item in items]
    columns = {
        "id": ids,
        "code": list(codes),
        "campaign_id": Same(campaign.pk, n),
        "programme_id": Same(campaign.programme_id, n),
        "face_value": values,
        "balance": values,
        "currency": Same(campaign.currency, n),
        "status": Same(S.ACTIVE, n),
        "status_before": Same("", n),
        "expires_at": Same(expires_at, n),
        "is_test": Same(is_test, n),
        "member_id": [item.member.id for item in items],
        "issued_at": Same(now, n),
    }

    def redraw(pending: list[int]) -> None:
        # a collision of 60+ random bits (or a code drawn twice): draw those rows again
        for i, code in zip(pending, generator.generate(len(pending)), strict=True):
            columns["code"][i] = code

    _insert_redrawing(Voucher, columns, n, unique="code", redraw=redraw)
    for i, item in enumerate(items):
        item.voucher = instance_for(
            Voucher,
            {name: columns[name][i] for name in _VOUCHER_NAMES},
            {"campaign": campaign, "member": item.member},
        )
        item.pooled = False


# --- orders, audit, outbox -----------------------------------------------------------------

_ORDER_NAMES = [f.attname for f in Order._meta.concrete_fields]


def _orders_insert(items: list[_Item], *, source: str, is_test: bool, now) -> list[Order]:
    """Insert with the ids and booking ids drawn ahead, ON CONFLICT (booking_id) DO NOTHING: a
    booking id taken already (or drawn twice) is drawn again for its row alone (and what was
    built with the old one is built again)."""
    if not items:
        return []
    n = len(items)
    held = [item.held for item in items]
    columns = {
        "id": [item.order_id for item in items],
        "booking_id": [item.booking_id for item in items],
        "programme_id": [item.campaign.programme_id for item in items],
        "campaign_id": [item.campaign.pk for item in items],
        "member_id": [item.member.id for item in items],
        "value": [item.value for item in items],
        "currency": [item.campaign.currency for item in items],
        "source": Same(source, n),
        "status": [Order.Status.PENDING if h else Order.Status.COMPLETED for h in held],
        "approval_state": [
            Order.ApprovalState.PENDING if h else Order.ApprovalState.NOT_REQUIRED for h in held
        ],
        "voucher_id": [None if item.voucher is None else item.voucher.id for item in items],
        "delivery_status": Same(Order.DeliveryStatus.PENDING, n),
        "is_test": Same(is_test, n),
        "points": Same(None, n),
        "points_transaction_id": Same(None, n),
        "reference": [item.reference for item in items],
        "approved_at": Same(None, n),
        "completed_at": [None if h else now for h in held],
        "cancelled_at": Same(None, n),
    }

    def redraw(pending: list[int]) -> None:
        for i, booking_id in zip(pending, booking_ids_new(len(pending)), strict=True):
            columns["booking_id"][i] = items[i].booking_id = booking_id
            items[i].prebuilt = None

    _insert_redrawing(Order, columns, n, unique="booking_id", redraw=redraw)
    orders = []
    for i, item in enumerate(items):
        campaign = item.campaign
        orders.append(
            instance_for(
                Order,
                {name: columns[name][i] for name in _ORDER_NAMES},
                {
                    "programme": campaign.programme,
                    "campaign": campaign,
                    "member": item.member,
                    "voucher": item.voucher,
                },
            )
        )
    return orders


def _order_writes_prebuild(item: _Item, *, audit: _Audit, source: str, is_test: bool):
    """What `_order_writes` gives the item if the claim accepts it as expected: held on a
    manual campaign, else with the voucher generated under its drawn id. None for a pool-only
    campaign's item (its voucher is known after the claim)."""
    if item.campaign.approval_mode == Campaign.ApprovalMode.MANUAL:
        return None, _order_strings(item, audit=audit, source=source, is_test=is_test, held=True)
    if item.voucher_id is None:
        return None
    return item.voucher_id, _order_strings(
        item, audit=audit, source=source, is_test=is_test, held=False, voucher_id=item.voucher_id
    )


def _order_writes(item: _Item, *, audit: _Audit, source: str, is_test: bool) -> tuple:
    """(voucher.issue audit entry or None, order.create audit entry, order.created payload,
    order.completed or order.pending_approval payload) of an accepted item: the prebuilt ones
    when the claim went as they assumed (same voucher id, generated), else built now."""
    voucher = item.voucher
    voucher_id = None if voucher is None else voucher.id
    prebuilt = item.prebuilt
    if prebuilt is not None and prebuilt[0] == voucher_id and not item.pooled:
        return prebuilt[1]
    return _order_strings(
        item, audit=audit, source=source, is_test=is_test, held=item.held, voucher_id=voucher_id
    )


def _order_strings(
    item: _Item, *, audit: _Audit, source: str, is_test: bool, held: bool, voucher_id=None
) -> tuple:
    """The order's audit entries (as `audit_log` writes them: voucher.issue for its voucher,
    order.create) and its events (as `event_emit` writes them: order.created, then
    order.completed or order.pending_approval), encoded here: changes as json.dumps(
    sort_keys=True, separators=(",", ":")) gives them (the hashed form), payloads as plain
    JSON (stored as jsonb)."""
    q = _quote
    campaign, member_id = item.campaign, item.member.id
    programme_id = campaign.programme_id
    if held:
        status, approval_state = Order.Status.PENDING, Order.ApprovalState.PENDING
    else:
        status, approval_state = Order.Status.COMPLETED, Order.ApprovalState.NOT_REQUIRED
    value = q(str(item.value))
    test = "true" if is_test else "false"
    voucher = "null" if voucher_id is None else int.__repr__(voucher_id)
    voucher_entry = None
    if voucher_id is not None:
        voucher_entry = audit.entry(
            "voucher.issue",
            "campaigns.voucher",
            voucher,
            item.voucher.programme_id if item.pooled else programme_id,
            member_id,
            None,
            # {"status": [available or None, active], "member": [None, member id]}, encoded
            '{"member":[null,' + int.__repr__(member_id) + '],"status":['
            + ('"available"' if item.pooled else "null") + ',"active"]}',
        )  # fmt: skip
    changes = (
        '{"approval_state":[null,' + q(approval_state)
        + '],"booking_id":[null,' + q(item.booking_id)
        + '],"campaign":[null,' + int.__repr__(campaign.pk)
        + '],"is_test":[null,' + test
        + '],"member":[null,' + int.__repr__(member_id)
        + '],"source":[null,' + q(source)
        + '],"status":[null,' + q(status)
        + '],"value":[null,' + value
        + '],"voucher":[null,' + voucher
        + "]}"
    )  # fmt: skip
    order_id = int.__repr__(item.order_id)
    order_entry = audit.entry(
        "order.create", "orders.order", order_id, programme_id, member_id, None, changes
    )
    data = (
        '{"booking_id":' + q(item.booking_id)
        + ',"order_id":' + order_id
        + ',"campaign_id":' + int.__repr__(campaign.pk)
        + ',"member_external_id":' + q(item.external_id)
        + ',"value":' + value
        + ',"currency":' + q(campaign.currency)
        + ',"source":' + q(source)
        + ',"status":' + q(status)
        + ',"approval_state":' + q(approval_state)
        + ',"is_test":' + test
        + ',"reference":' + q(item.reference)
    )  # fmt: skip
    head = ',"occurred_at":' + audit.occurred_at_json + ',"data":' + data
    created = '{"type":"order.created"' + head + "}}"
    if held:
        second = '{"type":"order.pending_approval"' + head + "}}"
    else:
        second = '{"type":"order.completed"' + head + ',"voucher_id":' + voucher + "}}"
    return voucher_entry, order_entry, created, second
