"""Catalog and campaign set-up: merchants, rewards (and the CSV catalog import), campaigns and
their status."""

import csv
import io
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.codes import MAX_CODE_LENGTH, validate_prefix
from campaigns.models import Campaign, Merchant, Reward
from plum.actors import Actor
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import Programme
from plum.services.audit import audit_log, model_update
from plum.services.events import event_emit

CAMPAIGN_CREATE_FIELDS = [
    "name",
    "reward",
    "value",
    "currency",
    "starts_at",
    "ends_at",
    "max_rewards",
    "budget",
    "per_member_cap",
    "approval_mode",
    "code_source",
    "code_prefix",
    "code_length",
    "expiry_days",
    "expiry_date",
    "default_channel",
    "in_storefront",
]
# What may change once a campaign exists; value, reward and code format are fixed by then.
CAMPAIGN_UPDATE_FIELDS = [
    "name",
    "starts_at",
    "ends_at",
    "max_rewards",
    "budget",
    "per_member_cap",
    "approval_mode",
    "expiry_days",
    "expiry_date",
    "default_channel",
    "in_storefront",
]


def _validated(instance, exclude=None):
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        raise InvalidInputError(fields=exc.message_dict) from exc


def _check_code_format(campaign: Campaign) -> None:
    error = validate_prefix(campaign.code_prefix)
    if error:
        raise InvalidInputError(fields={"code_prefix": [error]})
    if len(campaign.code_prefix) + campaign.code_length + 1 > MAX_CODE_LENGTH:
        raise InvalidInputError(
            fields={
                "code_length": [f"Prefix, code and check character: at most {MAX_CODE_LENGTH}."]
            }
        )


def campaign_create(*, programme: Programme, actor: Actor, **data) -> Campaign:
    fields = {k: v for k, v in data.items() if k in CAMPAIGN_CREATE_FIELDS}
    if "currency" not in fields and fields.get("reward") is not None:
        fields["currency"] = fields["reward"].currency
    campaign = Campaign(programme=programme, **fields)
    if campaign.reward_id and not campaign.reward.is_active:
        raise InvalidInputError(fields={"reward": ["This reward is no longer offered."]})
    campaign.code_prefix = (campaign.code_prefix or "").upper()
    _validated(campaign)
    _check_code_format(campaign)
    with transaction.atomic():
        campaign.save(force_insert=True)
        audit_log(
            actor=actor,
            action="campaign.create",
            obj=campaign,
            changes={f: [None, getattr(campaign, f)] for f in fields if f != "reward"}
            | {"reward": [None, campaign.reward_id]},
        )
        event_emit(
            event_type="campaign.created",
            programme_id=programme.pk,
            data={"campaign_id": campaign.pk, "name": campaign.name},
        )
    return campaign


def campaign_update(*, campaign: Campaign, data: dict, actor: Actor) -> Campaign:
    """Change governance and dates. Limits cannot drop below what was already issued."""
    unknown = sorted(set(data) - set(CAMPAIGN_UPDATE_FIELDS))
    if unknown:
        raise InvalidInputError(
            fields={name: ["This field cannot be changed."] for name in unknown}
        )
    with transaction.atomic():
        current = Campaign.objects.select_for_update(no_key=True).get(pk=campaign.pk)
        errors = {}
        if data.get("max_rewards") is not None and data["max_rewards"] < current.issued_count:
            errors["max_rewards"] = [f"{current.issued_count} rewards were already issued."]
        if data.get("budget") is not None and data["budget"] < current.issued_value:
            errors["budget"] = [f"{current.issued_value} was already issued."]
        if "starts_at" in data and current.status != Campaign.Status.DRAFT:
            errors["starts_at"] = ["The start can change only while the campaign is a draft."]
        if current.status == Campaign.Status.ENDED:
            errors["status"] = ["An ended campaign cannot change."]
        if errors:
            raise InvalidInputError(fields=errors)
        try:
            current, changes = model_update(
                instance=current, fields=CAMPAIGN_UPDATE_FIELDS, data=data
            )
        except ValidationError as exc:
            raise InvalidInputError(fields=exc.message_dict) from exc
        except IntegrityError as exc:  # a CHECK the pre-checks above did not foresee
            raise InvalidInputError(f"The change breaks a campaign rule: {exc}") from exc
        if changes:
            audit_log(actor=actor, action="campaign.update", obj=current, changes=changes)
            event_emit(
                event_type="campaign.updated",
                programme_id=current.programme_id,
                data={"campaign_id": current.pk, "fields": sorted(changes)},
            )
    return current


CAMPAIGN_ACTIONS = {
    "activate": Campaign.Status.ACTIVE,
    "pause": Campaign.Status.PAUSED,
    "resume": Campaign.Status.ACTIVE,
    "end": Campaign.Status.ENDED,
}


def campaign_transition(*, campaign: Campaign, action: str, actor: Actor) -> Campaign:
    """Start, pause, resume or end. A conditional UPDATE from the states the table allows, so
    two admins acting at once cannot both succeed from a stale read."""
    if action not in CAMPAIGN_ACTIONS:
        raise InvalidInputError(fields={"action": [f"Choose from {', '.join(CAMPAIGN_ACTIONS)}."]})
    target = CAMPAIGN_ACTIONS[action]
    sources = Campaign.TRANSITIONS.sources_for(target)
    if action == "resume":
        sources = [Campaign.Status.PAUSED]
    if action == "activate":
        sources = [Campaign.Status.DRAFT]
    with transaction.atomic():
        before = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).get()
        updated = Campaign.objects.filter(pk=campaign.pk, status__in=sources).update(
            status=target, updated_at=timezone.now()
        )
        if not updated:
            raise InvalidTransitionError(
                f"Cannot {action} a campaign that is {before}.", source=before, target=target
            )
        current = Campaign.objects.get(pk=campaign.pk)
        audit_log(
            actor=actor,
            action=f"campaign.{action}",
            obj=current,
            changes={"status": [before, target]},
        )
        event_emit(
            event_type=f"campaign.{target}" if action != "resume" else "campaign.resumed",
            programme_id=current.programme_id,
            data={"campaign_id": current.pk, "status": target},
        )
    return current


# --- Catalog ------------------------------------------------------------------------------

CATALOG_COLUMNS = [
    "sku",
    "merchant",
    "name",
    "kind",
    "country",
    "currency",
    "denominations",
    "min_value",
    "max_value",
    "points_price",
    "active",
]


def _decimal(value: str, column: str, errors: list, row: int) -> Decimal | None:
    if value in ("", None):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        errors.append({"row": row, "column": column, "message": f"Not a number: {value!r}."})
        return None


def catalog_import(*, text: str, actor: Actor) -> dict:
    """Create or update rewards by SKU from CSV text (merchants created by name). Every row is
    checked first; nothing is written if any row is wrong. Set-based: one upsert per 5,000
    rows."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [
        c
        for c in ("sku", "merchant", "name", "kind", "country", "currency")
        if c not in (reader.fieldnames or [])
    ]
    unknown = [c for c in (reader.fieldnames or []) if c not in CATALOG_COLUMNS]
    if missing or unknown:
        raise InvalidInputError(
            "The header does not match the catalog columns.",
            fields={
                "header": [
                    f"missing: {', '.join(missing) or '-'}; unknown: {', '.join(unknown) or '-'}"
                ]
            },
        )
    errors: list[dict] = []
    rows: list[dict] = []
    seen: set[str] = set()
    for number, raw in enumerate(reader, start=2):
        sku = (raw.get("sku") or "").strip()
        if not sku:
            errors.append({"row": number, "column": "sku", "message": "Required."})
            continue
        if sku in seen:
            errors.append({"row": number, "column": "sku", "message": "Duplicate SKU in file."})
            continue
        seen.add(sku)
        errors_before = len(errors)
        denominations = [
            d.strip() for d in (raw.get("denominations") or "").split("|") if d.strip()
        ]
        for d in denominations:
            _decimal(d, "denominations", errors, number)
        points = (raw.get("points_price") or "").strip()
        if points and not points.isdigit():
            errors.append({"row": number, "column": "points_price", "message": "Whole points."})
        reward = Reward(
            sku=sku,
            name=(raw.get("name") or "").strip(),
            kind=(raw.get("kind") or "").strip(),
            country=(raw.get("country") or "").strip().upper(),
            currency=(raw.get("currency") or "").strip().upper(),
            denominations=[str(Decimal(d)) for d in denominations if _is_decimal(d)],
            min_value=_decimal((raw.get("min_value") or "").strip(), "min_value", errors, number),
            max_value=_decimal((raw.get("max_value") or "").strip(), "max_value", errors, number),
            points_price=int(points) if points.isdigit() else None,
            is_active=(raw.get("active") or "1").strip().lower() not in {"0", "false", "no"},
        )
        try:
            if len(errors) == errors_before:  # a cell that did not parse is reported once
                reward.full_clean(exclude=["merchant", "sku"], validate_unique=False)
        except ValidationError as exc:
            for column, messages in exc.message_dict.items():
                errors.append({"row": number, "column": column, "message": " ".join(messages)})
        merchant = (raw.get("merchant") or "").strip()
        if not merchant:
            errors.append({"row": number, "column": "merchant", "message": "Required."})
        rows.append({"reward": reward, "merchant": merchant})
    if errors:
        return {"created_or_updated": 0, "errors": errors}
    with transaction.atomic():
        names = sorted({r["merchant"] for r in rows})
        Merchant.objects.bulk_create([Merchant(name=n) for n in names], ignore_conflicts=True)
        merchants = dict(Merchant.objects.filter(name__in=names).values_list("name", "pk"))
        rewards = []
        for row in rows:
            row["reward"].merchant_id = merchants[row["merchant"]]
            rewards.append(row["reward"])
        for start in range(0, len(rewards), 5000):
            Reward.objects.bulk_create(
                rewards[start : start + 5000],
                update_conflicts=True,
                unique_fields=["sku"],
                update_fields=[
                    "merchant",
                    "name",
                    "kind",
                    "country",
                    "currency",
                    "denominations",
                    "min_value",
                    "max_value",
                    "points_price",
                    "is_active",
                    "updated_at",
                ],
            )
        audit_log(
            actor=actor,
            action="catalog.import",
            object_type="campaigns.reward",
            object_id=f"bulk:{len(rewards)}",
            changes={"rows": [None, len(rewards)]},
        )
    return {"created_or_updated": len(rows), "errors": []}


def _is_decimal(value: str) -> bool:
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True
