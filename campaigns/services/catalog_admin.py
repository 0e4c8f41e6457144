"""Catalog set-up by a person, one row at a time (the Django admin): create and change merchants
and rewards, validated and audited like every other write. Bulk loads go through
`campaigns.services.campaigns.catalog_import`."""

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from campaigns.models import Merchant, Reward
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.services.audit import audit_log, model_update

MERCHANT_FIELDS = ["name", "commission_percent", "payout_period", "is_active"]
REWARD_CREATE_FIELDS = [
    "merchant",
    "sku",
    "name",
    "description",
    "kind",
    "country",
    "currency",
    "denominations",
    "min_value",
    "max_value",
    "points_price",
    "is_active",
]
# The SKU is the key catalog imports update by: it never changes once a reward exists.
REWARD_UPDATE_FIELDS = [f for f in REWARD_CREATE_FIELDS if f != "sku"]


def _plain(value):
    """A value the audit log can store: related rows by their id."""
    return value.pk if isinstance(value, models.Model) else value


def _audited_changes(changes: dict) -> dict:
    return {field: [_plain(before), _plain(after)] for field, (before, after) in changes.items()}


def _save_new(instance: models.Model) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise InvalidInputError(fields=exc.message_dict) from exc
    try:
        with transaction.atomic():
            instance.save(force_insert=True)
    except IntegrityError as exc:  # a unique name or SKU taken since full_clean looked
        raise InvalidInputError(f"The row breaks a catalog rule: {exc}") from exc


def _update(instance: models.Model, fields: list[str], data: dict) -> dict:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidInputError(
            fields={name: ["This field cannot be changed."] for name in unknown}
        )
    try:
        with transaction.atomic():
            _, changes = model_update(instance=instance, fields=fields, data=data)
    except ValidationError as exc:
        raise InvalidInputError(fields=exc.message_dict) from exc
    except IntegrityError as exc:
        raise InvalidInputError(f"The change breaks a catalog rule: {exc}") from exc
    return changes


def merchant_create(*, actor: Actor, **data) -> Merchant:
    merchant = Merchant(**{k: v for k, v in data.items() if k in MERCHANT_FIELDS})
    merchant.name = merchant.name.strip()
    with transaction.atomic():
        _save_new(merchant)
        audit_log(
            actor=actor,
            action="merchant.create",
            obj=merchant,
            changes={f: [None, getattr(merchant, f)] for f in MERCHANT_FIELDS},
        )
    return merchant


def merchant_update(*, merchant: Merchant, data: dict, actor: Actor) -> Merchant:
    with transaction.atomic():
        current = Merchant.objects.select_for_update(no_key=True).get(pk=merchant.pk)
        changes = _update(current, MERCHANT_FIELDS, data)
        if changes:
            audit_log(
                actor=actor,
                action="merchant.update",
                obj=current,
                changes=_audited_changes(changes),
            )
    return current


def _normalized_reward_data(data: dict) -> dict:
    """Codes in upper case and denominations as canonical decimal strings, so that
    `Reward.accepts_value` compares like with like."""
    data = dict(data)
    for field in ("country", "currency"):
        if isinstance(data.get(field), str):
            data[field] = data[field].strip().upper()
    if "denominations" in data:
        denominations = data["denominations"] or []
        if not isinstance(denominations, list):
            raise InvalidInputError(
                fields={"denominations": ['A list of face values, e.g. ["500.00", "1000.00"].']}
            )
        try:
            values = [Decimal(str(d)) for d in denominations]
        except InvalidOperation as exc:
            raise InvalidInputError(
                fields={"denominations": ["Every denomination must be a number."]}
            ) from exc
        if any(not v.is_finite() or v <= 0 for v in values):
            raise InvalidInputError(
                fields={"denominations": ["Every denomination must be a positive amount."]}
            )
        data["denominations"] = [str(v) for v in values]
    return data


def reward_create(*, actor: Actor, **data) -> Reward:
    data = _normalized_reward_data(data)
    reward = Reward(**{k: v for k, v in data.items() if k in REWARD_CREATE_FIELDS})
    with transaction.atomic():
        _save_new(reward)
        audit_log(
            actor=actor,
            action="reward.create",
            obj=reward,
            changes={f: [None, _plain(getattr(reward, f))] for f in REWARD_CREATE_FIELDS},
        )
    return reward


def reward_update(*, reward: Reward, data: dict, actor: Actor) -> Reward:
    data = _normalized_reward_data(data)
    with transaction.atomic():
        current = Reward.objects.select_for_update(no_key=True).get(pk=reward.pk)
        changes = _update(current, REWARD_UPDATE_FIELDS, data)
        if changes:
            audit_log(
                actor=actor,
                action="reward.update",
                obj=current,
                changes=_audited_changes(changes),
            )
    return current
