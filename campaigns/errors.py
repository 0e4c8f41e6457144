from decimal import Decimal

from campaigns.models import MONEY_MAX
from plum.errors import PlumError


class CampaignNotActiveError(PlumError):
    code = "campaign_not_active"
    status = 409
    message = "The campaign is not issuing rewards (not started, paused or ended)."


class CampaignExhaustedError(PlumError):
    code = "campaign_exhausted"
    status = 409
    message = "The campaign has issued its maximum number of rewards."


class BudgetExhaustedError(PlumError):
    code = "budget_exhausted"
    status = 409
    message = "The campaign's budget cannot cover this reward."

    @classmethod
    def left(cls, budget: Decimal | None, issued: Decimal) -> "BudgetExhaustedError":
        """The refusal for a campaign that has issued `issued` of `budget`; with no budget, of
        the most value a campaign can record (MONEY_MAX)."""
        if budget is None:
            return cls(
                f"The campaign has no budget, but its issued value cannot pass {MONEY_MAX:,} "
                "(the most Plum records); this reward would pass it.",
                remaining=str(MONEY_MAX - issued),
            )
        return cls(remaining=str(budget - issued))


class MemberCapReachedError(PlumError):
    code = "member_cap_reached"
    status = 409
    message = "This member has received the most rewards the campaign allows."


class PoolExhaustedError(PlumError):
    code = "pool_exhausted"
    status = 409
    message = "The campaign's pool has no code left to issue."


class VoucherNotFoundError(PlumError):
    code = "voucher_not_found"
    status = 404
    message = "No such voucher."


class VoucherCodeMistypedError(PlumError):
    code = "voucher_code_mistyped"
    status = 404
    message = "No such voucher, and the code's check character does not match: was it mistyped?"


class VoucherExpiredError(PlumError):
    code = "voucher_expired"
    status = 409
    message = "The voucher has expired."


class VoucherFlaggedError(PlumError):
    code = "voucher_flagged"
    status = 409
    message = "The voucher is flagged and cannot be redeemed until it is unflagged."


class VoucherNotRedeemableError(PlumError):
    code = "voucher_not_redeemable"
    status = 409
    message = "The voucher cannot be redeemed in its current state."


class VoucherInsufficientBalanceError(PlumError):
    code = "insufficient_balance"
    status = 409
    message = "The amount is more than the voucher's remaining balance."


class ReferenceReusedError(PlumError):
    code = "redemption_reference_reused"
    status = 409
    message = "This redemption reference was already used with a different amount."


class TooManyFailedLookupsError(PlumError):
    code = "too_many_failed_lookups"
    status = 429
    message = "Too many unknown codes were tried; wait before trying again."


class LookupLimiterUnavailableError(PlumError):
    code = "lookup_unavailable"
    status = 503
    message = "Code lookups are paused while their rate limiter is unavailable; retry shortly."
