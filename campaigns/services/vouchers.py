"""The voucher lifecycle: issue, redeem, flag, extend, recover, reveal, expire.

Invariants (see docs/concurrency.md):
- campaign.issued_count / issued_value equal the count / face value sum of the campaign's
  *counted* vouchers: live (not test), issued to a member, and not returned to the pool,
  recovered or cancelled (COUNTED_STATUSES);
- a voucher's balance never goes below zero (CHECK + conditional UPDATE) and the redemptions
  of a voucher sum to face_value - balance;
- every status change is in VOUCHER_TRANSITIONS.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone

from campaigns.codes import CodeGenerator, is_well_formed, normalize
from campaigns.errors import (
    BudgetExhaustedError,
    CampaignExhaustedError,
    CampaignNotActiveError,
    MemberCapReachedError,
    PoolExhaustedError,
    ReferenceReusedError,
    VoucherCodeMistypedError,
    VoucherExpiredError,
    VoucherFlaggedError,
    VoucherInsufficientBalanceError,
    VoucherNotFoundError,
    VoucherNotRedeemableError,
)
from campaigns.hooks import voucher_recovery_hooks
from campaigns.models import (
    MONEY_MAX,
    VOUCHER_TRANSITIONS,
    Campaign,
    CampaignMemberCounter,
    Redemption,
    Voucher,
    VoucherStatus,
)
from plum import sql as raw
from plum.actors import SYSTEM, Actor, client_label
from plum.errors import InvalidInputError
from plum.models import ApiClient, Job, Member
from plum.services.audit import audit_log
from plum.services.events import event_emit, event_emit_once
from plum.services.jobs import job_actor, job_create, register_job_handler

S = VoucherStatus
COUNTED_STATUSES = [S.ACTIVE, S.PARTIALLY_REDEEMED, S.REDEEMED, S.EXPIRED, S.FLAGGED]
REDEEMABLE_STATUSES = [S.ACTIVE, S.PARTIALLY_REDEEMED]
EXTENDABLE_STATUSES = [S.AVAILABLE, S.ACTIVE, S.PARTIALLY_REDEEMED, S.EXPIRED, S.FLAGGED]
RECOVERABLE_STATUSES = [S.ACTIVE, S.FLAGGED, S.EXPIRED]


def _expiry_for(campaign: Campaign, issued_at: datetime) -> datetime | None:
    if campaign.expiry_date:
        return campaign.expiry_date
    if campaign.expiry_days:
        return issued_at + timedelta(days=campaign.expiry_days)
    return None


# The conditional counter UPDATE of `_counts_for`, by hand (the ORM compiled it on every
# issue): Campaign.objects.issuing(now) (active, started, not ended), then max rewards and
# budget. RETURNING the counts after it, for the threshold events, under the row lock it takes.
_C = raw.table(Campaign)


def _c(name: str) -> str:
    return raw.column(Campaign, name)


_ISSUING = (
    f"{_c('status')} = %(active)s AND {_c('starts_at')} <= %(now)s "
    f"AND ({_c('ends_at')} IS NULL OR {_c('ends_at')} > %(now)s)"
)
_COUNTS_TAKE = (
    f"UPDATE {_C} SET {_c('issued_count')} = {_c('issued_count')} + 1, "  # noqa: S608
    f"{_c('issued_value')} = {_c('issued_value')} + %(value)s "
    f"WHERE {_c('id')} = %(id)s AND {_ISSUING} "
    f"AND ({_c('max_rewards')} IS NULL OR {_c('issued_count')} < {_c('max_rewards')}) "
    f"AND {_c('issued_value')} <= COALESCE({_c('budget')}, {MONEY_MAX}) - %(value)s "
    f"RETURNING {_c('issued_count')}, {_c('issued_value')}, {_c('max_rewards')}, "
    f"{_c('budget')}, {_c('programme')}"
)
_IS_ISSUING = f"SELECT 1 FROM {_C} WHERE {_c('id')} = %(id)s AND {_ISSUING} LIMIT 1"  # noqa: S608
# The per-member cap in one statement: the counter row is created at 1, or moved by one while
# under the cap (ON CONFLICT DO UPDATE locks the row and re-checks the condition on its latest
# version, so parallel issues to one member stop exactly at the cap). Nothing returned: capped.
_M = raw.table(CampaignMemberCounter)
_M_CAMPAIGN, _M_MEMBER, _M_ISSUED = (
    raw.column(CampaignMemberCounter, n) for n in ("campaign", "member", "issued")
)
_MEMBER_TAKE = (
    f"INSERT INTO {_M} ({_M_CAMPAIGN}, {_M_MEMBER}, {_M_ISSUED}) VALUES (%s, %s, 1) "  # noqa: S608
    f"ON CONFLICT ({_M_CAMPAIGN}, {_M_MEMBER}) DO UPDATE "
    f"SET {_M_ISSUED} = {_M}.{_M_ISSUED} + 1 WHERE {_M}.{_M_ISSUED} < %s "
    f"RETURNING {_M_ISSUED}"
)


def campaign_is_issuing(campaign_id: int, now: datetime) -> bool:
    """`Campaign.objects.issuing(now).filter(pk=campaign_id).exists()`, by hand."""
    with connection.cursor() as cursor:
        cursor.execute(
            _IS_ISSUING, {"id": campaign_id, "active": Campaign.Status.ACTIVE, "now": now}
        )
        return cursor.fetchone() is not None


def _counts_for(campaign: Campaign, member: Member, value: Decimal) -> Voucher | None:
    """Take one reward of `value` from the campaign's limits, or raise saying which limit
    refused. Conditional UPDATEs: the row count decides, no read-then-write. In the same
    statement, once the counters are taken, claim the pool's first available code of this
    value that no concurrent issue holds (SKIP LOCKED), as `_pooled_claim` does: returned, or
    None when the pool has none."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNTS_TAKE_AND_CLAIM,
            {
                "id": campaign.pk,
                "active": Campaign.Status.ACTIVE,
                "now": now,
                "value": value,
                "available": S.AVAILABLE,
                "is_test": False,
            },
        )
        row = cursor.fetchone()
    taken = None if row is None else row[:5]
    if taken is None:
        current = Campaign.objects.get(pk=campaign.pk)
        if not campaign_is_issuing(campaign.pk, now):
            raise CampaignNotActiveError()
        if current.max_rewards is not None and current.issued_count >= current.max_rewards:
            raise CampaignExhaustedError()
        raise BudgetExhaustedError.left(current.budget, current.issued_value)
    if campaign.max_rewards is not None or campaign.budget is not None:
        _emit_thresholds_crossed(campaign.pk, value, row=taken)
    if campaign.per_member_cap is not None:
        capped = None
        if campaign.per_member_cap > 0:
            with connection.cursor() as cursor:
                cursor.execute(_MEMBER_TAKE, [campaign.pk, member.pk, campaign.per_member_cap])
                capped = cursor.fetchone()
        if capped is None:
            raise MemberCapReachedError()
    pooled = row[5:]
    return None if pooled[0] is None else raw.from_row(Voucher, _VOUCHER_NAMES, pooled)


BUDGET_THRESHOLDS = (80, 100)


def _emit_thresholds_crossed(campaign_id: int, value: Decimal, row: tuple | None = None) -> None:
    """`campaign.budget_threshold` when this issue crossed 80% / 100% of the budget or of max
    rewards. Our counter UPDATE holds the campaign row until commit, so the counts read here
    (or returned by that UPDATE: `row`) are exactly ours; the once-key (plum EventOnce) makes
    each threshold fire once per campaign, even when counts are given back and crossed
    again."""
    if row is None:
        row = (
            Campaign.objects.filter(pk=campaign_id)
            .values_list("issued_count", "issued_value", "max_rewards", "budget", "programme_id")
            .get()
        )
    count, used, max_rewards, budget, programme_id = row
    for kind, after, before, limit in (
        ("count", count, count - 1, max_rewards),
        ("budget", used, used - value, budget),
    ):
        for threshold in BUDGET_THRESHOLDS if limit else ():
            line = Decimal(limit) * threshold / 100
            if before < line <= after:
                event_emit_once(
                    key=f"campaign.budget_threshold:{campaign_id}:{kind}:{threshold}",
                    event_type="campaign.budget_threshold",
                    programme_id=programme_id,
                    data={
                        "campaign_id": campaign_id,
                        "kind": kind,
                        "threshold": threshold,
                        "used": str(after),
                        "limit": str(limit),
                    },
                )


def _release_counts(rows: list[tuple[int, int | None, Decimal]]) -> None:
    """Give back what issuing took, for (campaign_id, member_id, face_value) rows."""
    per_campaign: dict[int, list] = {}
    per_member: dict[tuple[int, int], int] = {}
    for campaign_id, member_id, face_value in rows:
        count_value = per_campaign.setdefault(campaign_id, [0, Decimal("0")])
        count_value[0] += 1
        count_value[1] += face_value
        if member_id is not None:
            per_member[(campaign_id, member_id)] = per_member.get((campaign_id, member_id), 0) + 1
    for campaign_id in sorted(per_campaign):
        count, value = per_campaign[campaign_id]
        Campaign.objects.filter(pk=campaign_id).update(
            issued_count=F("issued_count") - count, issued_value=F("issued_value") - value
        )
    for (campaign_id, member_id), count in sorted(per_member.items()):
        CampaignMemberCounter.objects.filter(campaign_id=campaign_id, member_id=member_id).update(
            issued=F("issued") - count
        )


def voucher_issue(
    *,
    campaign: Campaign,
    member: Member,
    actor: Actor,
    is_test: bool = False,
    value: Decimal | None = None,
) -> Voucher:
    """Issue one voucher of the campaign to a member, inside the caller's transaction (the
    orders service wraps it with the order). Live issues are counted against max rewards,
    budget and the per-member cap; test issues touch no counter. A pooled code is claimed with
    SKIP LOCKED, so concurrent issues never wait on each other's code."""
    if member.programme_id != campaign.programme_id:
        raise InvalidInputError("The member belongs to another programme.")
    value = campaign.value if value is None else value
    if value != campaign.value and not campaign.reward.accepts_value(value):
        raise InvalidInputError(fields={"value": ["The reward is not sold at this value."]})
    with transaction.atomic(savepoint=False):
        if is_test:
            if not campaign_is_issuing(campaign.pk, timezone.now()):
                raise CampaignNotActiveError()
            pooled = _pooled_claim(campaign.pk, is_test=is_test, value=value)
        else:
            pooled = _counts_for(campaign, member, value)  # with the pool's claim
        now = timezone.now()
        fields = {
            "status": S.ACTIVE,
            "member": member,
            "issued_at": now,
            "expires_at": _expiry_for(campaign, now),
        }
        if pooled is not None:
            # A pooled code may carry its own expiry (imported, or extended in the pool):
            # the earlier of it and the campaign's rule holds.
            expiries = [e for e in (pooled.expires_at, fields["expires_at"]) if e is not None]
            fields["expires_at"] = min(expiries) if expiries else None
            for name, field_value in fields.items():
                setattr(pooled, name, field_value)
            pooled.balance = pooled.face_value
            pooled.save(update_fields=[*fields, "balance", "updated_at"])
            voucher = pooled
        elif campaign.code_source == Campaign.CodeSource.POOL:
            raise PoolExhaustedError()
        else:
            voucher = _create_generated(campaign, value=value, is_test=is_test, **fields)
        audit_log(
            actor=actor,
            action="voucher.issue",
            obj=voucher,
            changes={
                "status": [S.AVAILABLE if pooled else None, S.ACTIVE],
                "member": [None, member.pk],
            },
        )
        return voucher


_V = raw.table(Voucher)
_VOUCHER_NAMES = raw.attnames(Voucher)
# select_for_update(skip_locked=True, of=("self",)) by hand: the pool's first available code
# of this value that no concurrent issue holds.
_POOLED_CLAIM = (
    f"SELECT {raw.select_list(Voucher)} FROM {_V} "  # noqa: S608
    f"WHERE {raw.column(Voucher, 'campaign')} = %s AND {raw.column(Voucher, 'status')} = %s "
    f"AND {raw.column(Voucher, 'is_test')} = %s AND {raw.column(Voucher, 'face_value')} = %s "
    f"ORDER BY {raw.column(Voucher, 'id')} ASC LIMIT 1 FOR UPDATE OF {_V} SKIP LOCKED"
)


# The counter UPDATE and, only once it has taken the counts, the pool's claim, in one round
# trip: the claim is the statement above (`_POOLED_CLAIM`), made to wait for the UPDATE by
# reading its result.
_COUNTS_TAKE_AND_CLAIM = (
    f"WITH c AS ({_COUNTS_TAKE}), "  # noqa: S608 - the models' own names
    f"v AS (SELECT {raw.select_list(Voucher)} FROM {_V} "
    f"WHERE {raw.column(Voucher, 'campaign')} = %(id)s "
    f"AND {raw.column(Voucher, 'status')} = %(available)s "
    f"AND {raw.column(Voucher, 'is_test')} = %(is_test)s "
    f"AND {raw.column(Voucher, 'face_value')} = %(value)s AND EXISTS (SELECT 1 FROM c) "
    f"ORDER BY {raw.column(Voucher, 'id')} ASC LIMIT 1 FOR UPDATE OF {_V} SKIP LOCKED) "
    "SELECT c.*, v.* FROM c LEFT JOIN v ON true"
)


def _pooled_claim(campaign_id: int, *, is_test: bool, value: Decimal) -> Voucher | None:
    with connection.cursor() as cursor:
        cursor.execute(_POOLED_CLAIM, [campaign_id, S.AVAILABLE, is_test, value])
        row = cursor.fetchone()
    return None if row is None else raw.from_row(Voucher, _VOUCHER_NAMES, row)


@lru_cache(maxsize=256)
def _code_generator(prefix: str, length: int) -> CodeGenerator:
    """One generator per code format (building its tables costs more than drawing a code)."""
    return CodeGenerator(prefix=prefix, length=length)


def _create_generated(campaign: Campaign, *, value: Decimal, is_test: bool, **fields) -> Voucher:
    """A new voucher with a freshly drawn code; a collision (60+ random bits) draws again. On
    Postgres one `INSERT ... ON CONFLICT (code) DO NOTHING RETURNING`: a collision inserts
    nothing, with no savepoint around the insert."""
    generator = _code_generator(campaign.code_prefix, campaign.code_length)
    member = fields.pop("member")
    for _ in range(5):
        voucher = raw.new(
            Voucher,
            code=generator.generate(1)[0],
            campaign_id=campaign.pk,
            programme_id=campaign.programme_id,
            member_id=member.pk,
            face_value=value,
            balance=value,
            currency=campaign.currency,
            is_test=is_test,
            **fields,
        )
        Voucher.campaign.field.set_cached_value(voucher, campaign)
        Voucher.member.field.set_cached_value(voucher, member)
        if connection.vendor == "postgresql":
            if raw.row_insert(voucher, conflict=("code",)):
                return voucher
            continue
        try:
            with transaction.atomic():
                voucher.save(force_insert=True)
                return voucher
        except IntegrityError:
            continue
    raise RuntimeError("Could not draw a unique voucher code in 5 attempts")


def voucher_find(*, code: str, queryset) -> Voucher:
    """The voucher with `code` among `queryset` (already scoped to the principal). Unknown and
    out-of-scope codes are the same error; a code that fails its check character says so."""
    normalized = normalize(code)
    voucher = queryset.filter(code=normalized).first()
    if voucher is None:
        if is_well_formed(normalized) or not normalized.isalnum():
            raise VoucherNotFoundError()
        raise VoucherCodeMistypedError()
    return voucher


def _actor_columns(actor: Actor) -> dict:
    if isinstance(actor, ApiClient):
        return {"redeemed_by_client": actor, "actor_label": client_label(actor)}
    if isinstance(actor, AbstractBaseUser):
        return {"redeemed_by_user": actor, "actor_label": actor.get_username()}
    return {"actor_label": getattr(actor, "label", "system")}


def voucher_redeem(
    *, voucher: Voucher, amount: Decimal, reference: str, actor: Actor
) -> tuple[Redemption, bool]:
    """Redeem `amount` (full or partial). Idempotent on (voucher, reference): the same
    reference again returns the first redemption (created=False). The balance moves by one
    conditional UPDATE — status redeemable, not expired by the clock, balance >= amount — so
    parallel redemptions can never take it below zero."""
    if amount <= 0:
        raise InvalidInputError(fields={"amount": ["The amount must be positive."]})
    if not reference or len(reference) > 120:
        raise InvalidInputError(fields={"reference": ["Give a reference of 1 to 120 characters."]})
    existing = Redemption.objects.filter(voucher=voucher, reference=reference).first()
    if existing is not None:
        return _replay(existing, amount)
    now = timezone.now()
    try:
        with transaction.atomic(durable=True):
            updated = (
                Voucher.objects.filter(
                    pk=voucher.pk, status__in=REDEEMABLE_STATUSES, balance__gte=amount
                )
                .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
                .update(
                    balance=F("balance") - amount,
                    status=Case(
                        When(balance=amount, then=Value(S.REDEEMED)),
                        default=Value(S.PARTIALLY_REDEEMED),
                    ),
                    updated_at=now,
                )
            )
            if not updated:
                _refuse_redemption(voucher.pk, amount, now)
            voucher.refresh_from_db(fields=["balance", "status", "updated_at"])
            redemption = Redemption.objects.create(
                voucher=voucher,
                amount=amount,
                reference=reference,
                balance_after=voucher.balance,
                **_actor_columns(actor),
            )
            audit_log(
                actor=actor,
                action="voucher.redeem",
                obj=voucher,
                changes={
                    "balance": [voucher.balance + amount, voucher.balance],
                    "status": [None, voucher.status],
                    "reference": [None, reference],
                },
            )
            _emit(
                "voucher.redeemed",
                voucher,
                amount=str(amount),
                balance=str(voucher.balance),
                reference=reference,
            )
    except IntegrityError:
        # The same reference committed concurrently: ours rolled back whole; answer with theirs.
        existing = Redemption.objects.filter(voucher=voucher, reference=reference).first()
        if existing is None:
            raise
        return _replay(existing, amount)
    return redemption, True


def _replay(existing: Redemption, amount: Decimal) -> tuple[Redemption, bool]:
    if existing.amount != amount:
        raise ReferenceReusedError()
    return existing, False


def _refuse_redemption(voucher_id: int, amount: Decimal, now: datetime) -> None:
    current = Voucher.objects.get(pk=voucher_id)
    if current.status == S.FLAGGED:
        raise VoucherFlaggedError()
    if current.status == S.EXPIRED or (
        current.status in REDEEMABLE_STATUSES and current.expires_at and current.expires_at <= now
    ):
        raise VoucherExpiredError(expires_at=current.expires_at.isoformat())
    if current.status in REDEEMABLE_STATUSES:
        raise VoucherInsufficientBalanceError(balance=str(current.balance))
    raise VoucherNotRedeemableError(status=current.status)


def _emit(action: str, voucher: Voucher, **data) -> None:
    event_emit(
        event_type=action,
        programme_id=voucher.programme_id,
        data={"voucher_id": voucher.pk, "campaign_id": voucher.campaign_id, **data},
    )


def voucher_flag(*, voucher: Voucher, actor: Actor, reason: str = "") -> Voucher:
    """Suspected fraud or error: the voucher cannot be redeemed until unflagged. The state it
    was flagged from is kept, for the unflag."""
    sources = [s for s in REDEEMABLE_STATUSES if VOUCHER_TRANSITIONS.allowed(s, S.FLAGGED)]
    with transaction.atomic(durable=True):
        updated = Voucher.objects.filter(pk=voucher.pk, status__in=sources).update(
            status=S.FLAGGED, status_before=F("status"), updated_at=timezone.now()
        )
        current = Voucher.objects.get(pk=voucher.pk)
        if not updated:
            VOUCHER_TRANSITIONS.check(current.status, S.FLAGGED)
            raise VoucherNotRedeemableError("Only active vouchers can be flagged.")
        audit_log(
            actor=actor,
            action="voucher.flag",
            obj=current,
            changes={"status": [current.status_before, S.FLAGGED], "reason": [None, reason]},
        )
        _emit("voucher.flagged", current, reason=reason)
        return current


def voucher_unflag(*, voucher: Voucher, actor: Actor) -> Voucher:
    """Back to the state it was flagged from."""
    with transaction.atomic(durable=True):
        targets = [S.ACTIVE, S.PARTIALLY_REDEEMED]
        updated = Voucher.objects.filter(
            pk=voucher.pk, status=S.FLAGGED, status_before__in=targets
        ).update(status=F("status_before"), status_before="", updated_at=timezone.now())
        current = Voucher.objects.get(pk=voucher.pk)
        if not updated:
            raise VoucherNotRedeemableError("The voucher is not flagged.", status=current.status)
        audit_log(
            actor=actor,
            action="voucher.unflag",
            obj=current,
            changes={"status": [S.FLAGGED, current.status]},
        )
        _emit("voucher.unflagged", current, status=current.status)
        return current


def voucher_reveal(*, voucher: Voucher, actor: Actor) -> str:
    """The full code, for a person: an audited action."""
    with transaction.atomic():
        audit_log(actor=actor, action="voucher.reveal", obj=voucher)
    return voucher.code


def _bulk_audit(*, actor: Actor, action: str, ids: list[int], programme_ids, changes: dict):
    """One audit event per programme for a bulk action, naming the vouchers it touched."""
    for programme_id in sorted(programme_ids):
        audit_log(
            actor=actor,
            action=action,
            object_type="campaigns.voucher",
            object_id=str(ids[0]) if len(ids) == 1 else f"bulk:{len(ids)}",
            programme_id=programme_id,
            changes={**changes, "voucher_ids": [None, ids[:1000]]},
        )


def vouchers_extend(*, vouchers, expires_at: datetime, actor: Actor, emit: bool = True) -> dict:
    """Move the expiry of the given vouchers (a queryset, already scoped) to `expires_at`,
    set-based. Never to the past; redeemed, cancelled and recovered vouchers are skipped and
    reported. Expired vouchers come back to the state they lapsed from."""
    now = timezone.now()
    if expires_at <= now:
        raise InvalidInputError(fields={"expires_at": ["The new expiry must be in the future."]})
    with transaction.atomic(durable=True):
        rows = list(
            Voucher.objects.select_for_update(no_key=True)
            .filter(pk__in=vouchers.values("pk"))
            .order_by("id")
            .values_list("id", "code", "status", "programme_id", "campaign_id")
        )
        eligible = [r for r in rows if r[2] in EXTENDABLE_STATUSES]
        skipped = [{"code": f"…{r[1][-4:]}", "status": r[2]} for r in rows if r not in eligible]
        ids = [r[0] for r in eligible]
        Voucher.objects.filter(pk__in=ids).update(
            expires_at=expires_at,
            status=Case(
                When(
                    status=S.EXPIRED,
                    then=Coalesce(NullIf(F("status_before"), Value("")), Value(S.ACTIVE)),
                ),
                default=F("status"),
            ),
            status_before=Case(When(status=S.EXPIRED, then=Value("")), default=F("status_before")),
            updated_at=now,
        )
        if ids:
            _bulk_audit(
                actor=actor,
                action="voucher.extend",
                ids=ids,
                programme_ids={r[3] for r in eligible},
                changes={"expires_at": [None, expires_at]},
            )
            for programme_id in sorted({r[3] for r in eligible}) if emit else ():
                event_emit(
                    event_type="voucher.extended",
                    programme_id=programme_id,
                    data={
                        "count": sum(1 for r in eligible if r[3] == programme_id),
                        "campaign_ids": sorted({r[4] for r in eligible if r[3] == programme_id}),
                        "expires_at": expires_at.isoformat(),
                    },
                )
        return {"extended": len(ids), "skipped": skipped}


EXTEND_INLINE_LIMIT = 10_000
EXTEND_JOB = "vouchers.extend"
EXTEND_CHUNK = 5_000


def _campaign_selection(*, campaign_id: int, statuses, expires_before, is_test):
    vouchers = Voucher.objects.filter(campaign_id=campaign_id, status__in=statuses)
    if expires_before is not None:
        vouchers = vouchers.filter(expires_at__lt=expires_before)
    if is_test is not None:
        vouchers = vouchers.filter(is_test=is_test)
    return vouchers


def vouchers_extend_campaign(
    *,
    campaign: Campaign,
    statuses: list[str],
    expires_before: datetime | None,
    is_test: bool | None,
    expires_at: datetime,
    actor: Actor,
) -> dict | Job:
    """Extend a campaign's vouchers matching the filters: at once when there are up to
    EXTEND_INLINE_LIMIT of them, else as a Job (returned) that works in chunks of
    EXTEND_CHUNK, each its own transaction, and emits one summary event at the end."""
    if expires_at <= timezone.now():
        raise InvalidInputError(fields={"expires_at": ["The new expiry must be in the future."]})
    selection = _campaign_selection(
        campaign_id=campaign.pk, statuses=statuses, expires_before=expires_before, is_test=is_test
    )
    total = selection.count()
    if total <= EXTEND_INLINE_LIMIT:
        return vouchers_extend(vouchers=selection, expires_at=expires_at, actor=actor)
    with transaction.atomic():
        return job_create(
            kind=EXTEND_JOB,
            programme=campaign.programme,
            total=total,
            params={
                "campaign_id": campaign.pk,
                "statuses": list(statuses),
                "expires_before": expires_before.isoformat() if expires_before else None,
                "is_test": is_test,
                "expires_at": expires_at.isoformat(),
            },
            actor=actor,
        )


@register_job_handler(EXTEND_JOB)
def _extend_job(job: Job, progress) -> dict:
    params = job.params
    expires_at = datetime.fromisoformat(params["expires_at"])
    expires_before = params["expires_before"] and datetime.fromisoformat(params["expires_before"])
    ids = list(
        _campaign_selection(
            campaign_id=params["campaign_id"],
            statuses=params["statuses"],
            expires_before=expires_before,
            is_test=params["is_test"],
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    actor = job_actor(job)
    extended = skipped = 0
    for start in range(0, len(ids), EXTEND_CHUNK):
        chunk = ids[start : start + EXTEND_CHUNK]
        result = vouchers_extend(
            vouchers=Voucher.objects.filter(pk__in=chunk),
            expires_at=expires_at,
            actor=actor,
            emit=False,
        )
        extended += result["extended"]
        skipped += len(result["skipped"])
        progress(min(start + len(chunk), job.total))
    with transaction.atomic():
        event_emit(
            event_type="voucher.extended",
            programme_id=job.programme_id,
            data={
                "count": extended,
                "campaign_ids": [params["campaign_id"]],
                "expires_at": expires_at.isoformat(),
                "job_id": str(job.pk),
            },
        )
    return {"extended": extended, "skipped": skipped}


def vouchers_recover(*, vouchers, actor: Actor, to_pool: bool = True) -> dict:
    """Reclaim unused vouchers (never redeemed: balance == face value) that were issued, back
    to the campaign's pool for redistribution (to_pool) or retired for good (recovered). The
    campaign's counters and the per-member counters give back what issuing took, in the same
    transaction. Redeemed or partially redeemed vouchers are refused and reported.

    Locks the vouchers (ordered by id) before reading their state, then the campaign rows:
    a redemption racing a recovery waits for the lock and finds the voucher no longer
    redeemable, or the recovery finds it redeemed; exactly one wins.

    Registered recovery hooks (campaigns.hooks; orders registers one) first lock what holds
    the vouchers, and after the move update it in this transaction: the order holding a
    recovered voucher is cancelled with it."""
    hooks = voucher_recovery_hooks()
    with transaction.atomic(durable=True):
        for hook in hooks:
            hook.lock_holders(voucher_ids=vouchers.values("pk"))
        rows = list(
            Voucher.objects.select_for_update(no_key=True)
            .filter(pk__in=vouchers.values("pk"))
            .order_by("id")
        )
        eligible = [
            v
            for v in rows
            if v.status in RECOVERABLE_STATUSES and v.balance == v.face_value and v.member_id
        ]
        refused = [{"code": v.masked_code, "status": v.status} for v in rows if v not in eligible]
        ids = [v.pk for v in eligible]
        target = S.AVAILABLE if to_pool else S.RECOVERED
        if to_pool:
            Voucher.objects.filter(pk__in=ids).update(
                status=S.AVAILABLE,
                status_before="",
                member=None,
                issued_at=None,
                expires_at=None,
                updated_at=timezone.now(),
            )
        else:
            Voucher.objects.filter(pk__in=ids).update(
                status=S.RECOVERED, status_before="", updated_at=timezone.now()
            )
        _release_counts(
            [(v.campaign_id, v.member_id, v.face_value) for v in eligible if not v.is_test]
        )
        if eligible:
            for hook in hooks:
                hook.recovered(vouchers=eligible, to_pool=to_pool, actor=actor)
        if ids:
            _bulk_audit(
                actor=actor,
                action="voucher.recover",
                ids=ids,
                programme_ids={v.programme_id for v in eligible},
                changes={"status": [None, target]},
            )
            for programme_id in sorted({v.programme_id for v in eligible}):
                mine = [v for v in eligible if v.programme_id == programme_id]
                event_emit(
                    event_type="voucher.recovered",
                    programme_id=programme_id,
                    data={
                        "count": len(mine),
                        "campaign_ids": sorted({v.campaign_id for v in mine}),
                        "to_pool": to_pool,
                    },
                )
        return {"recovered": len(ids), "refused": refused}


def voucher_cancel(*, voucher: Voucher, actor: Actor) -> Voucher:
    """Withdraw an unused voucher for good (an order cancelled, a pool code withdrawn); an
    issued one gives its counts back. Runs inside the caller's transaction."""
    with transaction.atomic(savepoint=False):
        current = Voucher.objects.select_for_update(no_key=True).get(pk=voucher.pk)
        VOUCHER_TRANSITIONS.check(current.status, S.CANCELLED)
        if current.balance != current.face_value:
            raise VoucherNotRedeemableError("A voucher with redemptions cannot be cancelled.")
        Voucher.objects.filter(pk=current.pk).update(status=S.CANCELLED, updated_at=timezone.now())
        if current.status in COUNTED_STATUSES and current.member_id and not current.is_test:
            _release_counts([(current.campaign_id, current.member_id, current.face_value)])
        audit_log(
            actor=actor,
            action="voucher.cancel",
            obj=current,
            changes={"status": [current.status, S.CANCELLED]},
        )
        current.refresh_from_db()
        return current


def vouchers_expire_lapsed(*, now: datetime | None = None) -> int:
    """The beat task's work: vouchers past their expiry become expired (redemption already
    refuses them by the clock). Set-based, idempotent; keeps the state each lapsed from."""
    now = now or timezone.now()
    sources = [S.AVAILABLE, S.ACTIVE, S.PARTIALLY_REDEEMED]
    with transaction.atomic(durable=True):
        lapsed = Voucher.objects.filter(status__in=sources, expires_at__lte=now)
        per_programme = dict(
            lapsed.values("programme_id").annotate(n=Count("id")).values_list("programme_id", "n")
        )
        count = lapsed.update(status=S.EXPIRED, status_before=F("status"), updated_at=now)
        for programme_id, n in sorted(per_programme.items()):
            audit_log(
                actor=SYSTEM,
                action="voucher.expire",
                object_type="campaigns.voucher",
                object_id=f"bulk:{n}",
                programme_id=programme_id,
                changes={"count": [None, n]},
            )
        return count


def campaign_counters_from_vouchers(campaign: Campaign) -> tuple[int, Decimal]:
    """What the campaign's counters must equal, recomputed from its voucher rows."""
    totals = Voucher.objects.filter(
        campaign=campaign, is_test=False, member__isnull=False, status__in=COUNTED_STATUSES
    ).aggregate(n=Count("id"), value=Sum("face_value"))
    return totals["n"], totals["value"] or Decimal("0")
