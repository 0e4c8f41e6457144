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


class BatchTooLargeError(PlumError):
    code = "batch_too_large"
    status = 422
    message = "A batch holds at most 1,000 items."
