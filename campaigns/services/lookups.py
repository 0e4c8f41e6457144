"""Lookups of vouchers by code, behind a per-principal limit on unknown codes (brute force).

The limit is an atomic counter in the cache (INCR on Redis, a lock on locmem), not DRF's
read-then-write throttle; every failed lookup is audited. The API uses it today; the ops
portal and the storefront look codes up through it too. While the cache (Redis) is
unreachable the limit cannot be kept, so lookups are refused (503 lookup_unavailable): closed,
never unguarded, never a 500."""

import logging
from contextlib import contextmanager

from django.core.cache import cache
from django.db import transaction

from campaigns.codes import normalize
from campaigns.errors import (
    LookupLimiterUnavailableError,
    TooManyFailedLookupsError,
    VoucherCodeMistypedError,
    VoucherNotFoundError,
)
from campaigns.models import Voucher
from campaigns.services.vouchers import voucher_find
from plum.models import ApiClient
from plum.services.audit import audit_log

try:  # the cache's own errors when it is Redis: unreachable, timed out
    from redis.exceptions import RedisError as _CacheDown
except ImportError:  # pragma: no cover - redis is a dependency; locmem raises nothing here
    _CacheDown = OSError

logger = logging.getLogger(__name__)

# Brute force on codes: at most this many unknown codes per principal per window. A lookup
# reserves a slot before it reads (and gives it back when the code exists), so a burst of
# parallel guesses cannot test more unknown codes than the limit, whatever the timing.
FAILED_LOOKUPS_LIMIT = 30
FAILED_LOOKUPS_WINDOW_SECONDS = 60


@contextmanager
def _limiter():
    """Cache errors become a refusal: without the counter no code is looked up."""
    try:
        yield
    except (_CacheDown, OSError) as exc:
        logger.warning("Cache unavailable; code lookups refused: %s", exc)
        raise LookupLimiterUnavailableError() from exc


def _failures_key(principal) -> str:
    kind = "client" if isinstance(principal, ApiClient) else "user"
    return f"campaigns:voucher-lookup-failures:{kind}:{principal.pk}"


def _failures_add(key: str, count: int) -> int:
    """Add `count` to the window's failures and return the new total, atomically (INCR on
    Redis, a lock on locmem). The first addition opens a window of a fixed length."""
    for _ in range(3):
        cache.add(key, 0, timeout=FAILED_LOOKUPS_WINDOW_SECONDS)
        try:
            total = cache.incr(key, count)
        except ValueError:  # the window closed between add and incr: open a new one
            continue
        if total == count:
            # We opened the window; or, on Redis, the key lapsed between the backend's EXISTS
            # and INCR, and INCR recreated it without an expiry. Either way: give it one.
            cache.touch(key, FAILED_LOOKUPS_WINDOW_SECONDS)
        return total
    raise RuntimeError("The failed-lookup counter kept expiring under us")


def _failures_release(key: str) -> None:
    try:
        total = cache.decr(key)
    except ValueError:  # the window closed meanwhile: nothing to give back
        return
    if total < 0:
        # Lapsed between EXISTS and DECR, and DECR recreated it: do not let it live forever.
        cache.touch(key, FAILED_LOOKUPS_WINDOW_SECONDS)


def _audit_failed_lookup(principal, changes: dict) -> None:
    with transaction.atomic():
        audit_log(
            actor=principal,
            action="voucher.lookup_failed",
            object_type="campaigns.voucher",
            object_id="",
            changes=changes,
        )


def voucher_get_guarded(*, principal, code: str, queryset) -> Voucher:
    """The voucher `code` among `queryset`, behind the per-principal failed-lookup limit.
    Unknown codes and codes outside scope are the same 404; each is audited and counted."""
    key = _failures_key(principal)
    with _limiter():
        total = _failures_add(key, 1)
    if total > FAILED_LOOKUPS_LIMIT:
        raise TooManyFailedLookupsError()
    failed = False
    try:
        return voucher_find(code=code, queryset=queryset)
    except (VoucherNotFoundError, VoucherCodeMistypedError):
        failed = True
        _audit_failed_lookup(principal, {"code_last4": [None, normalize(code)[-4:]]})
        raise
    finally:
        if not failed:
            try:
                _failures_release(key)
            except (_CacheDown, OSError) as exc:  # the slot lapses with its window
                logger.warning("Cache unavailable; lookup slot not given back: %s", exc)


def vouchers_get_guarded(*, principal, codes: list[str], queryset):
    """(the vouchers of `queryset` named by `codes`, the codes not found as sent). The unknown
    codes count against the same limit; a request that would pass it learns nothing."""
    key = _failures_key(principal)
    with _limiter():
        spent = cache.get(key) or 0
    if spent >= FAILED_LOOKUPS_LIMIT:
        raise TooManyFailedLookupsError()
    wanted: dict[str, str] = {}
    for code in codes:
        wanted.setdefault(normalize(code), code)
    found = set(queryset.filter(code__in=list(wanted)).values_list("code", flat=True))
    missing = [sent for normalized, sent in wanted.items() if normalized not in found]
    if missing:
        _audit_failed_lookup(
            principal, {"codes_last4": [None, [normalize(c)[-4:] for c in missing]]}
        )
        with _limiter():
            total = _failures_add(key, len(missing))
        if total > FAILED_LOOKUPS_LIMIT:
            raise TooManyFailedLookupsError()
    return queryset.filter(code__in=found), missing
