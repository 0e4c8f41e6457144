from plum.errors import PlumError


class InsufficientPointsError(PlumError):
    code = "insufficient_points"
    status = 409
    message = "The wallet does not hold enough points."


class LedgerKeyReusedError(PlumError):
    code = "ledger_key_reused"
    status = 409
    message = "This idempotency key was already used for a different points transaction."


class TransactionAlreadyReversedError(PlumError):
    code = "transaction_already_reversed"
    status = 409
    message = "This transaction has already been reversed."


class TransactionNotReversibleError(PlumError):
    code = "transaction_not_reversible"
    status = 409
    message = "A reversal cannot itself be reversed."


class PointsTestModeError(PlumError):
    code = "points_test_mode_unsupported"
    status = 403
    message = "Test-mode API keys cannot award points: the ledger has no test mode yet."
