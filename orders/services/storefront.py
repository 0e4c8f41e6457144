"""The storefront's writes: member accounts by invitation, sign-in lockout, and redemptions that
happen once per click.

Invariants:
- one confirmed redemption per confirmation page: the page issues a `StoreRedeemToken`; the
  confirming POST claims it with one conditional UPDATE (`claimed_at IS NULL`), so of any number
  of submits of one page exactly one reaches `order_redeem_points`; the others are shown the
  order it created (the token names it; the order's reference carries the token too, so the
  order is found even if the process died between the two commits);
- a refusal (insufficient points, campaign ended or exhausted, member cap, ...) changes nothing
  in the ledger or the orders and releases the token, so the member may try again;
- sign-in lockout: failures are counted per (username, IP) with an atomic cache increment; at
  LOGIN_MAX_FAILURES the pair is locked for LOGIN_LOCKOUT_SECONDS. Failures and the lockout are
  audited. While the cache (Redis) is unreachable the count cannot be kept, so sign-in is
  refused (`LoginLimiterUnavailableError`, 503) rather than left unguarded."""

import hashlib
import logging
import secrets
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import Campaign
from orders.models import Order, StoreRedeemToken
from orders.services.issuance import order_redeem_points
from plum.actors import Actor, SystemActor
from plum.errors import InvalidInputError, PlumError
from plum.models import Member
from plum.services.audit import audit_log
from plum.services.programmes import member_link_user

try:  # the cache's own errors when it is Redis: unreachable, timed out
    from redis.exceptions import RedisError as _CacheDown
except ImportError:  # pragma: no cover - redis is a dependency
    _CacheDown = OSError

logger = logging.getLogger(__name__)

LOGIN_MAX_FAILURES = 5
LOGIN_LOCKOUT_SECONDS = 15 * 60
REDEEM_TOKEN_TTL = timedelta(hours=1)
INVITE_MAX_AGE = 7 * 24 * 3600
INVITE_SALT = "plum.store.invite"


class StoreTokenInvalidError(PlumError):
    code = "store_token_invalid"
    status = 409
    message = "This confirmation page has expired. Please choose the reward again."


class StoreTokenInFlightError(PlumError):
    code = "store_token_in_flight"
    status = 409
    message = "This redemption is already being processed. Check your orders in a moment."


class LoginLimiterUnavailableError(PlumError):
    code = "login_unavailable"
    status = 503
    message = (
        "Sign-in is paused for a moment while its safety check is unavailable; try again shortly."
    )


class InviteInvalidError(PlumError):
    code = "invite_invalid"
    status = 400
    message = "This invitation link is invalid, has expired or has already been used."


# --- sign-in lockout -------------------------------------------------------------------------


def _login_key(username: str, ip: str | None) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{ip or '-'}".encode()).hexdigest()[:32]
    return f"store:login-failures:{digest}"


def login_is_locked(*, username: str, ip: str | None) -> bool:
    try:
        return (cache.get(_login_key(username, ip)) or 0) >= LOGIN_MAX_FAILURES
    except (_CacheDown, OSError) as exc:
        logger.warning("Cache unavailable; sign-in refused: %s", exc)
        raise LoginLimiterUnavailableError() from exc


def login_failure_record(*, username: str, ip: str | None) -> int:
    """Count one failed sign-in for (username, IP), atomically (Redis INCR / locmem lock); the
    window starts at the first failure. Returns the count; the one that reaches the limit is
    audited as the lockout."""
    key = _login_key(username, ip)
    try:
        cache.add(key, 0, timeout=LOGIN_LOCKOUT_SECONDS)
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=LOGIN_LOCKOUT_SECONDS)
            failures = 1
    except (_CacheDown, OSError) as exc:
        logger.warning("Cache unavailable; sign-in refused: %s", exc)
        raise LoginLimiterUnavailableError() from exc
    actor = SystemActor(label=f"store:{username[:150]}")
    with transaction.atomic():
        audit_log(
            actor=actor,
            # Exactly one count reaches the limit, however many fail at once: one lockout event.
            action="store.login_locked" if failures == LOGIN_MAX_FAILURES else "store.login_failed",
            object_type="store.login",
            object_id=username[:100],
            changes={"failures": [failures - 1, failures]},
        )
    return failures


def login_failures_clear(*, username: str, ip: str | None) -> None:
    try:
        cache.delete(_login_key(username, ip))
    except (_CacheDown, OSError) as exc:  # the count lapses with its window
        logger.warning("Cache unavailable; sign-in failures not cleared: %s", exc)


# --- accounts by invitation ------------------------------------------------------------------


def member_invite_token(*, member: Member) -> str:
    """A signed, expiring invitation for a member without an account. It is single-use because
    accepting links a user, and a member with a user refuses another."""
    return signing.dumps({"m": member.pk}, salt=INVITE_SALT, compress=True)


def member_from_invite(*, token: str) -> Member:
    try:
        data = signing.loads(token, salt=INVITE_SALT, max_age=INVITE_MAX_AGE)
    except signing.BadSignature as exc:
        raise InviteInvalidError() from exc
    member = Member.objects.select_related("programme").filter(pk=data.get("m")).first()
    if member is None or member.user_id is not None or not member.programme.is_active:
        raise InviteInvalidError()
    return member


def member_accept_invite(*, token: str, username: str, password: str):
    """Create the member's own account from an invitation and link it. Audited (user.create,
    member.link_user). A used, forged or expired token, a taken username or a weak password
    changes nothing."""
    member = member_from_invite(token=token)
    user_model = get_user_model()
    candidate = user_model(username=username, email=member.email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise InvalidInputError(fields={"password1": list(exc.messages)}) from exc
    with transaction.atomic(durable=True):
        # Re-read under lock: two tabs accepting one invitation link one user.
        member = Member.objects.select_for_update(of=("self",)).get(pk=member.pk)
        if member.user_id is not None:
            raise InviteInvalidError()
        try:
            with transaction.atomic():
                user = user_model.objects.create_user(
                    username=username, email=member.email, password=password
                )
        except IntegrityError as exc:
            raise InvalidInputError(
                fields={"username": ["That username is taken. Choose another."]}
            ) from exc
        audit_log(
            actor=user,
            action="user.create",
            obj=user,
            changes={"username": [None, username], "via": [None, "store.invite"]},
        )
        member_link_user(member=member, user=user, actor=user)
    return user


# --- redemption, once per click --------------------------------------------------------------


def store_redeem_token_issue(*, member: Member, campaign: Campaign, value: Decimal) -> str:
    token = secrets.token_urlsafe(32)
    StoreRedeemToken.objects.create(token=token, member=member, campaign=campaign, value=value)
    return token


def _order_for_token(member: Member, token: str) -> Order | None:
    return (
        Order.objects.filter(member=member, reference=f"store:{token}", source="storefront")
        .order_by("-id")
        .first()
    )


def store_redeem(*, member: Member, token: str, actor: Actor) -> tuple[Order, bool]:
    """Confirm the redemption a confirmation page offered. Returns (order, created): created is
    False when this token was already used and the order of its first use is returned. Raises
    the refusal (nothing changed, token released) or StoreToken*Error."""
    now = timezone.now()
    claimed = StoreRedeemToken.objects.filter(
        token=token, member=member, claimed_at__isnull=True, created_at__gt=now - REDEEM_TOKEN_TTL
    ).update(claimed_at=now)
    if not claimed:
        row = (
            StoreRedeemToken.objects.filter(token=token, member=member)
            .values("order_id", "claimed_at")
            .first()
        )
        if row is None or row["claimed_at"] is None:
            raise StoreTokenInvalidError()
        order = _order_for_token(member, token)
        if order is None:
            raise StoreTokenInFlightError()
        return order, False
    entry = StoreRedeemToken.objects.select_related("campaign__reward").get(token=token)
    try:
        order = order_redeem_points(
            campaign=entry.campaign,
            member=member,
            value=entry.value,
            reference=f"store:{token}",
            actor=actor,
        )
    except BaseException:
        StoreRedeemToken.objects.filter(pk=entry.pk, order__isnull=True).update(claimed_at=None)
        raise
    StoreRedeemToken.objects.filter(pk=entry.pk).update(order=order)
    return order, True


def store_redeem_tokens_purge(*, older_than: timedelta = timedelta(days=2)) -> int:
    deleted, _ = StoreRedeemToken.objects.filter(
        created_at__lt=timezone.now() - older_than
    ).delete()
    return deleted
