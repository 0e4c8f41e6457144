"""Upload errors, each with a stable code the API returns as `error.code`."""

from plum.errors import PlumError


class UploadEncodingError(PlumError):
    code = "upload_encoding_invalid"
    status = 400
    message = "The file is not UTF-8 text."


class UploadHeaderError(PlumError):
    code = "upload_header_invalid"
    status = 400
    message = "The header row is not usable."


class UploadMalformedError(PlumError):
    code = "upload_malformed"
    status = 400
    message = "The CSV is malformed."


class UploadEmptyError(PlumError):
    code = "upload_empty"
    status = 400
    message = "The file is empty."


class UploadTooManyRowsError(PlumError):
    code = "upload_too_many_rows"
    status = 400
    message = "The file has too many rows."


class UploadTooLargeError(PlumError):
    code = "upload_too_large"
    status = 413
    message = "The file is too large."


class UploadNotFoundError(PlumError):
    code = "upload_not_found"
    status = 404
    message = "No such upload."


class UploadHasInvalidRowsError(PlumError):
    code = "upload_has_invalid_rows"
    status = 409
    message = (
        "The file has invalid rows: fix them and upload again, or confirm with "
        "send_only_valid to send the valid rows only."
    )


class UploadHasNoValidRowsError(PlumError):
    code = "upload_has_no_valid_rows"
    status = 409
    message = "No row of the file is valid: there is nothing to send."


class UploadExceedsCampaignError(PlumError):
    code = "upload_exceeds_campaign"
    status = 409
    message = "The file needs more than the campaign has left."
