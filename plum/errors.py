"""Domain errors. Each carries a stable snake_case `code` that the API returns as
`error.code`, an HTTP status, and optionally per-field messages."""


class PlumError(Exception):
    code = "error"
    status = 400
    message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, fields: dict | None = None, **extra):
        self.message = message or self.message
        self.fields = fields or {}
        self.extra = extra
        super().__init__(self.message)


class InvalidInputError(PlumError):
    code = "invalid"
    status = 400
    message = "The request has invalid fields."


class NotFoundError(PlumError):
    code = "not_found"
    status = 404
    message = "Not found."


class InvalidTransitionError(PlumError):
    code = "invalid_transition"
    status = 409
    message = "That change is not allowed from the current state."


class IdempotencyKeyInUseError(PlumError):
    code = "idempotency_key_in_use"
    status = 409
    message = "A request with this Idempotency-Key is still being processed; retry later."


class IdempotencyKeyAppliedError(PlumError):
    code = "idempotency_key_applied"
    status = 409
    message = (
        "The first request with this Idempotency-Key changed data but its response was lost "
        "(a server error). Look the result up (for example by your reference) before sending "
        "it again with a new key."
    )


class IdempotencyKeyReusedError(PlumError):
    code = "idempotency_key_reused"
    status = 422
    message = "This Idempotency-Key was already used with a different request."


class InvalidIdempotencyKeyError(PlumError):
    code = "invalid_idempotency_key"
    status = 400
    message = "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
