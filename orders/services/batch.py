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
"""

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import uuid4

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from campaigns.codes import CodeGenerator
from campaigns.errors import (
    BudgetExhaustedError,
    CampaignExhaustedError,
    CampaignNotActiveError,
    MemberCapReachedError,
    PoolExhaustedError,
)
from campaigns.models import Campaign, CampaignMemberCounter, Voucher, VoucherStatus
from campaigns.services.vouchers import _expiry_for
from orders.errors import BatchTooLargeError, RecipientInvalidError
from orders.models import Order
from orders.services.delivery import deliveries_queue
from orders.services.issuance import RECIPIENT_FIELDS, booking_id_new
from plum import context
from plum.actors import Actor, actor_fields
from plum.bulk import Row, row_for, rows_insert
from plum.errors import InvalidInputError, PlumError
from plum.models import AuditEvent, Member, OutboxMessage
from plum.services.audit import event_content_hash, ip_text
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


@dataclass
class _Item:
    index: int
    campaign: Campaign
    external_id: str
    data: dict
    value: Decimal
    reference: str
    member: Member | None = None
    voucher: Voucher | None = None
    held: bool = False


@dataclass
class _Writes:
    """What the batch inserts at the end, in bulk."""

    audit: list[Row] = field(default_factory=list)
    outbox: list[Row] = field(default_factory=list)


# --- bulk writes ---------------------------------------------------------------------------


def _insert(model, objs: list, *, returning_pk: bool) -> None:
    """Insert `objs` in one statement (plum.bulk: psycopg2's execute_values on Postgres).
    Django's bulk_create compiles a placeholder and prepares each of the tens of thousands of
    values of a batch in Python, which cost more than the database's work."""
    rows_insert(model, objs, returning_pk=returning_pk)


# --- plain checks (no database) ------------------------------------------------------------


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


def value_check(campaign: Campaign, value: Decimal | None) -> Decimal:
    """The item's face value: the campaign's, or one its reward is sold at."""
    value = campaign.value if value is None else value
    if value != campaign.value and not campaign.reward.accepts_value(value):
        raise InvalidInputError(fields={"value": ["The reward is not sold at this value."]})
    return value


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
        try:
            external_id, data = recipient_check(request.recipient)
            value = value_check(request.campaign, request.value)
        except PlumError as exc:
            results[index] = exc
            continue
        items.append(
            _Item(
                index=index,
                campaign=request.campaign,
                external_id=external_id,
                data=data,
                value=value,
                reference=request.reference or "",
            )
        )
    if items:
        with transaction.atomic(durable=True):
            writes = _Writes()
            now = timezone.now()
            _members_upsert(items, actor=actor, writes=writes, now=now)
            accepted = _claim(items, results, is_test=is_test, actor=actor, writes=writes)
            orders = _orders_insert(accepted, source=source, is_test=is_test, now=now)
            for item, order in zip(accepted, orders, strict=True):
                results[item.index] = order
            _order_writes(accepted, orders, actor=actor, writes=writes)
            _insert(AuditEvent, writes.audit, returning_pk=False)
            _insert(OutboxMessage, writes.outbox, returning_pk=False)
            # Each completed order's voucher goes to its member (orders.services.delivery).
            completed = [o for o in orders if o.status == Order.Status.COMPLETED]
            if completed:
                # Fresh rows: queued as they are, and each order's delivery_status set on it
                # (failed: no address), so the rendered results show what the queueing decided.
                deliveries_queue(orders=completed, actor=actor, fresh=True)
            if writes.outbox:
                transaction.on_commit(lambda: outbox_schedule_sweeps(len(writes.outbox)))
    return results


# --- members -------------------------------------------------------------------------------


def _members_upsert(items: list[_Item], *, actor: Actor, writes: _Writes, now) -> None:
    """Create the members the batch names that do not exist and update the contact details
    given, in a constant number of statements per programme: read the existing, insert the
    missing (ON CONFLICT DO NOTHING RETURNING: a concurrent upsert may win, and its row is then
    read and updated like an existing one), and one bulk UPDATE per set of changed fields.
    Several items for one member merge their details in batch order (the later wins), as that
    many single upserts would."""
    by_programme: dict[int, dict[str, dict]] = defaultdict(dict)
    for item in items:
        merged = by_programme[item.campaign.programme_id].setdefault(item.external_id, {})
        merged.update(item.data)
    members: dict[tuple[int, str], Member] = {}
    for programme_id, wanted in sorted(by_programme.items()):
        existing = {
            m.external_id: m
            for m in Member.objects.filter(programme_id=programme_id, external_id__in=list(wanted))
        }
        missing = sorted(eid for eid in wanted if eid not in existing)
        if missing:
            created = _members_insert(programme_id, missing, wanted, now)
            for member in created.values():
                data = wanted[member.external_id]
                writes.audit.append(
                    _audit(
                        actor,
                        "member.create",
                        member,
                        {
                            "external_id": [None, member.external_id],
                            **{f: [None, v] for f, v in data.items()},
                        },
                    )
                )
                members[(programme_id, member.external_id)] = member
            raced = [eid for eid in missing if eid not in created]
            if raced:
                existing.update(
                    Member.objects.filter(programme_id=programme_id, external_id__in=raced).in_bulk(
                        field_name="external_id"
                    )
                )
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
                writes.audit.append(_audit(actor, "member.update", member, changes))
            members[(programme_id, eid)] = member
        if changed:
            # Lock every member to be updated in id order first: the per-field-set UPDATEs
            # below would otherwise lock them in an order two batches could cross.
            list(
                Member.objects.select_for_update(no_key=True)
                .filter(pk__in=[m.pk for group in changed.values() for m in group])
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        for fields, group in sorted(changed.items()):
            Member.objects.bulk_update(
                sorted(group, key=lambda m: m.pk), [*fields, "updated_at"], batch_size=1000
            )
    for item in items:
        item.member = members[(item.campaign.programme_id, item.external_id)]


_MEMBER_COLUMNS = ["programme_id", "external_id", *MEMBER_FIELDS, "created_at", "updated_at"]


def _members_insert(programme_id: int, external_ids: list[str], wanted: dict, now) -> dict:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the members this statement created, by
    external id (one that a concurrent upsert created first is not among them)."""
    rows = []
    for eid in external_ids:
        data = wanted[eid]
        rows.append([programme_id, eid, *(data.get(f, "") for f in MEMBER_FIELDS), now, now])
    table = Member._meta.db_table
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(_MEMBER_COLUMNS)) + ")"] * len(rows))
    sql = (
        f"INSERT INTO {table} ({', '.join(_MEMBER_COLUMNS)}) VALUES {placeholders} "  # noqa: S608
        "ON CONFLICT (programme_id, external_id) DO NOTHING RETURNING id, external_id"
    )
    field = Member._meta.get_field("created_at")
    params = []
    for row in rows:
        params.extend(row[:-2])
        params.extend([field.get_db_prep_value(now, connection)] * 2)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    created = {}
    for pk, eid in returned:
        data = wanted[eid]
        created[eid] = Member(
            pk=pk,
            programme_id=programme_id,
            external_id=eid,
            created_at=now,
            updated_at=now,
            **{f: data.get(f, "") for f in MEMBER_FIELDS},
        )
    return created


# --- claiming: counters, member caps, codes ----------------------------------------------


def _claim(
    items: list[_Item], results: list, *, is_test: bool, actor: Actor, writes: _Writes
) -> list[_Item]:
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
        accepted.extend(_claim_codes(campaign, granted, results, is_test=is_test, now=now))
    accepted.sort(key=lambda i: i.index)
    for item in accepted:
        if item.voucher is not None:
            writes.audit.append(
                _audit(
                    actor,
                    "voucher.issue",
                    item.voucher,
                    {
                        "status": [S.AVAILABLE if item.voucher.pooled else None, S.ACTIVE],
                        "member": [None, item.member.pk],
                    },
                )
            )
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
            key = (campaign.pk, item.member.pk)
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
            error = BudgetExhaustedError(remaining=str(budget - value))
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
                 AND (cur.budget IS NULL OR u.s <= cur.budget - cur.issued_value)
                GROUP BY cur.id
            )
            UPDATE {table} c
            SET issued_count = c.issued_count + g.n, issued_value = c.issued_value + g.v
            FROM granted g WHERE c.id = g.id
            RETURNING g.n, c.issued_count, c.issued_value, c.max_rewards, c.budget
        """  # noqa: S608 - the table name is the model's, the values are parameters
        with connection.cursor() as cursor:
            cursor.execute(sql, {"id": campaign.pk, "now": now, "cum": cumulative})
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
            if budget is not None and total > budget - issued:
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
        wanted[item.member.pk] += 1
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
        (kept if item.member.pk in confirmed else lost).append(item)
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
            per_member[item.member.pk] += 1
        CampaignMemberCounter.objects.filter(
            campaign=campaign, member_id__in=list(per_member)
        ).update(
            issued=F("issued")
            - Case(*[When(member_id=m, then=Value(n)) for m, n in sorted(per_member.items())])
        )


def _claim_codes(
    campaign: Campaign, items: list[_Item], results: list, *, is_test: bool, now
) -> list[_Item]:
    """A voucher for each item: pooled codes first (one SELECT ... FOR UPDATE SKIP LOCKED
    LIMIT n per face value, the oldest first, as the single path), then codes generated in
    bulk; a pool-only campaign refuses what its pool cannot cover (pool_exhausted) and gives
    those items' counts back."""
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
            .order_by("id")[: len(group)]
        )
        for item, voucher in zip(group, pooled, strict=False):
            expiries = [e for e in (voucher.expires_at, expires_at) if e is not None]
            voucher.status = S.ACTIVE
            voucher.member = item.member
            voucher.issued_at = now
            voucher.expires_at = min(expiries) if expiries else None
            voucher.balance = voucher.face_value
            voucher.updated_at = now
            voucher.pooled = True
            item.voucher = voucher
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
        _vouchers_generate(campaign, uncovered, is_test=is_test, expires_at=expires_at, now=now)
    return items


def _pooled_update(vouchers: list[Voucher], now) -> None:
    """The claimed pool codes become the members' active vouchers: one UPDATE ... FROM VALUES
    (bulk_update elsewhere)."""
    if not vouchers:
        return
    if connection.vendor != "postgresql":
        Voucher.objects.bulk_update(
            vouchers,
            ["status", "member", "issued_at", "expires_at", "balance", "updated_at"],
            batch_size=1000,
        )
        return
    from psycopg2.extras import execute_values

    table = Voucher._meta.db_table
    sql = (
        f"UPDATE {table} AS v SET status = 'active', member_id = x.member_id, "  # noqa: S608
        "issued_at = x.now, expires_at = x.expires_at, balance = v.face_value, updated_at = x.now "
        "FROM (VALUES %s) AS x(id, member_id, expires_at, now) "
        "WHERE v.id = x.id AND v.status = 'available'"
    )
    rows = [(v.pk, v.member_id, v.expires_at, now) for v in vouchers]
    with connection.cursor() as cursor:
        execute_values(
            cursor.cursor,
            sql,
            rows,
            template="(%s::bigint, %s::bigint, %s::timestamptz, %s::timestamptz)",
            page_size=len(rows),
        )
        if cursor.cursor.rowcount != len(rows):  # cannot happen: the rows are locked
            raise RuntimeError("A claimed pool code left the pool under its lock")


def _vouchers_generate(campaign: Campaign, items: list[_Item], *, is_test, expires_at, now) -> None:
    generator = CodeGenerator(prefix=campaign.code_prefix, length=campaign.code_length)
    for _ in range(ATTEMPTS):
        vouchers = [
            Voucher(
                code=code,
                campaign=campaign,
                programme_id=campaign.programme_id,
                face_value=item.value,
                balance=item.value,
                currency=campaign.currency,
                is_test=is_test,
                status=S.ACTIVE,
                member=item.member,
                issued_at=now,
                expires_at=expires_at,
            )
            for item, code in zip(items, generator.generate(len(items)), strict=True)
        ]
        try:
            with transaction.atomic():
                _insert(Voucher, vouchers, returning_pk=True)
        except IntegrityError:
            continue  # a collision of 60+ random bits: draw the whole set again
        for item, voucher in zip(items, vouchers, strict=True):
            voucher.pooled = False
            item.voucher = voucher
        return
    raise RuntimeError(f"Could not draw unique voucher codes in {ATTEMPTS} attempts")


# --- orders, audit, outbox -----------------------------------------------------------------


def _orders_insert(items: list[_Item], *, source: str, is_test: bool, now) -> list[Order]:
    """Bulk insert with fresh booking ids; a collision (the unique constraint) draws the whole
    set again."""
    if not items:
        return []
    for _ in range(ATTEMPTS):
        orders = [
            Order(
                booking_id=booking_id_new(),
                programme=item.campaign.programme,
                campaign=item.campaign,
                member=item.member,
                value=item.value,
                currency=item.campaign.currency,
                source=source,
                reference=item.reference,
                is_test=is_test,
                voucher=item.voucher,
                status=Order.Status.PENDING if item.held else Order.Status.COMPLETED,
                approval_state=(
                    Order.ApprovalState.PENDING if item.held else Order.ApprovalState.NOT_REQUIRED
                ),
                completed_at=None if item.held else now,
            )
            for item in items
        ]
        if len({o.booking_id for o in orders}) != len(orders):
            continue
        try:
            with transaction.atomic():
                _insert(Order, orders, returning_pk=True)
        except IntegrityError:
            continue
        return orders
    raise RuntimeError(f"Could not draw unique booking ids in {ATTEMPTS} attempts")


def _order_writes(items: list[_Item], orders: list[Order], *, actor: Actor, writes: _Writes):
    for item, order in zip(items, orders, strict=True):
        writes.audit.append(
            _audit(
                actor,
                "order.create",
                order,
                {
                    "booking_id": [None, order.booking_id],
                    "status": [None, order.status],
                    "approval_state": [None, order.approval_state],
                    "campaign": [None, order.campaign_id],
                    "member": [None, order.member_id],
                    "value": [None, str(order.value)],
                    "source": [None, order.source],
                    "voucher": [None, order.voucher_id],
                    "is_test": [None, order.is_test],
                },
            )
        )
        writes.outbox.append(_event("order.created", order, item))
        if order.status == Order.Status.COMPLETED:
            writes.outbox.append(
                _event("order.completed", order, item, voucher_id=order.voucher_id)
            )
        else:
            writes.outbox.append(_event("order.pending_approval", order, item))


def _event(event_type: str, order: Order, item: _Item, **data) -> Row:
    """The outbox row `event_emit` writes for an order event (orders.services.issuance), built
    for a bulk insert (a plum.bulk Row: no model instance per row)."""
    now = timezone.now()
    return row_for(
        OutboxMessage,
        id=uuid4(),
        kind=EVENT_KIND,
        programme_id=order.programme_id,
        payload={
            "type": event_type,
            "occurred_at": now.isoformat(),
            "data": {
                "booking_id": order.booking_id,
                "order_id": order.pk,
                "campaign_id": order.campaign_id,
                "member_external_id": item.external_id,
                "value": str(order.value),
                "currency": order.currency,
                "source": order.source,
                "status": order.status,
                "approval_state": order.approval_state,
                "is_test": order.is_test,
                "reference": order.reference,
                **data,
            },
        },
        next_attempt_at=now,
        max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
    )


def _audit(actor: Actor, action: str, obj, changes: dict) -> Row:
    """The row `audit_log` writes, built for a bulk insert in the same transaction (a plum.bulk
    Row: no model instance per row)."""
    request = context.current()
    event = row_for(
        AuditEvent,
        occurred_at=timezone.now(),
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        programme_id=getattr(obj, "programme_id", None),
        changes=changes,  # JSON values already: ids, strings, booleans, None
        request_id=request.request_id,
        ip=ip_text(request.ip) if request.ip else None,
        # The member the event concerns, as audit_log names it: what a member's audit log lists.
        member_id=obj.pk if isinstance(obj, Member) else getattr(obj, "member_id", None),
        **actor_fields(actor),
    )
    event.hash = event_content_hash(event)
    return event
