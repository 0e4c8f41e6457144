"""Callbacks through which a higher layer (orders) reacts to voucher changes that campaigns
makes, without campaigns importing it (ARCHITECTURE.md: a lower layer that must react to a
higher one gets a callback, never an import).

A `VoucherRecoveryHook` is registered once, in the registering app's `AppConfig.ready()`.
`vouchers_recover` calls, inside its own durable transaction:

- `lock_holders(voucher_ids=...)` before it locks the vouchers: the hook locks whatever holds
  them (orders, in id order), so recovery takes locks in the order a cancellation does
  (holder, then voucher) and the two cannot deadlock;
- `recovered(vouchers=..., to_pool=..., actor=...)` after the vouchers moved and their
  counters were given back: the hook updates its holders in the same transaction. The
  vouchers passed still carry the member they were issued to.
"""

from typing import Protocol

from django.db.models import QuerySet


class VoucherRecoveryHook(Protocol):
    def lock_holders(self, *, voucher_ids: QuerySet) -> None: ...

    def recovered(self, *, vouchers: list, to_pool: bool, actor) -> None: ...


_recovery_hooks: list[VoucherRecoveryHook] = []


def register_voucher_recovery_hook(hook: VoucherRecoveryHook) -> VoucherRecoveryHook:
    """Idempotent: `ready()` may run more than once in tests."""
    if all(type(h) is not type(hook) for h in _recovery_hooks):
        _recovery_hooks.append(hook)
    return hook


def voucher_recovery_hooks() -> tuple[VoucherRecoveryHook, ...]:
    return tuple(_recovery_hooks)
