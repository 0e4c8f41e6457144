from plum.errors import InvalidTransitionError, PlumError


class RecipientInvalidError(PlumError):
    code = "invalid_recipient"
    status = 422
    message = "The recipient's details are invalid."


class OrderNotFoundError(PlumError):
    code = "order_not_found"
    status = 404
    message = "No such order."


class OrderNotAwaitingApprovalError(InvalidTransitionError):
    message = "The order is not awaiting approval."


class OrderVoucherUsedError(PlumError):
    code = "order_voucher_used"
    status = 409
    message = "The order's voucher has been redeemed (in part or in full); it cannot be cancelled."


class CampaignNotInStorefrontError(PlumError):
    code = "campaign_not_in_storefront"
    status = 409
    message = "The campaign is not offered in the storefront: its reward cannot be bought."


class CampaignNotPricedInPointsError(PlumError):
    code = "campaign_not_priced_in_points"
    status = 409
    message = "The campaign's reward has no points price: it cannot be bought with points."


class CampaignApprovalRequiredError(PlumError):
    code = "campaign_approval_required"
    status = 409
    message = (
        "The campaign holds rewards for approval: points cannot buy a reward that may be refused."
    )


class RedemptionTestModeError(PlumError):
    code = "points_test_mode_unsupported"
    status = 403
    message = "Test-mode API keys cannot redeem points: the ledger has no test mode yet."


class PayoutPeriodInvalidError(PlumError):
    code = "payout_period_invalid"
    status = 422
    message = (
        "A payout period ends at 00:00 UTC on a Monday (weekly) or on the 1st of a month "
        "(monthly), given as an aware datetime."
    )


class PayoutPeriodNotOverError(PlumError):
    code = "payout_period_not_over"
    status = 409
    message = "The payout period has not ended yet; it can be closed once it is over."


class DeliveryNotFoundError(PlumError):
    code = "delivery_not_found"
    status = 404
    message = "No such delivery."


class DeliveryInProgressError(PlumError):
    code = "delivery_in_progress"
    status = 409
    message = "The order is being delivered right now; wait for the result before resending."


class OrderNotDeliverableError(PlumError):
    code = "order_not_deliverable"
    status = 409
    message = "Only a completed order (with its voucher) can be delivered."


class DeliveryContactMissingError(PlumError):
    code = "missing_contact"
    status = 422
    message = "The member has no address or number for this channel."


class BatchTooLargeError(PlumError):
    code = "batch_too_large"
    status = 422
    message = "A batch holds at most 1,000 items."
