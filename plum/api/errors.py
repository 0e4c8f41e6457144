"""One error shape for every API error: {"error": {"code", "message", "fields"}}."""

import logging
import math

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from plum.errors import PlumError

logger = logging.getLogger(__name__)

_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def error_body(code: str, message: str, fields: dict | None = None, **extra) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}


def _flatten(detail):
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [str(item) for item in detail]
        return [_flatten(item) for item in detail]
    return [str(detail)]


def api_exception_handler(exc, context):
    headers = {}
    if isinstance(exc, PlumError):
        return Response(
            error_body(exc.code, exc.message, exc.fields, **exc.extra), status=exc.status
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is larger than this API accepts."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real server error: Django's handler500 answers (see json_server_error)

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.pop("non_field_errors", None)
            message = non_field[0] if non_field else "The request has invalid fields."
        else:
            fields = {}
            message = "; ".join(_flatten(detail))
        return Response(error_body("invalid", message, fields), status=exc.status_code)

    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        # Rounded up: a client that waits exactly this long is let through.
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_json"
    else:
        code = _CODES.get(type(exc)) or getattr(exc, "default_code", "error")
    detail = exc.detail
    if isinstance(detail, exceptions.ErrorDetail) and detail.code not in (None, exc.default_code):
        code = detail.code
    message = str(detail) if not isinstance(detail, dict | list) else exc.default_detail
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    return Response(error_body(code, message), status=exc.status_code, headers=headers)


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


def json_bad_request(request, exception=None):
    return JsonResponse(
        error_body("bad_request", "The request could not be understood."), status=400
    )


def json_permission_denied(request, exception=None):
    return JsonResponse(
        error_body("permission_denied", "You do not have permission to perform this action."),
        status=403,
    )


def json_not_found(request, exception=None):
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def json_server_error(request):
    return JsonResponse(
        error_body("server_error", "Something went wrong on our side; it has been logged."),
        status=500,
    )
