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
