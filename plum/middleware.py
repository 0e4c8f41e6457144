import uuid

from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse

from plum import context
from plum.api.errors import error_body, is_api_path

_REQUEST_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class RequestContextMiddleware:
    """Binds the request id (the caller's X-Request-ID if sane, else a new one) and client IP
    for the audit log, and echoes the id back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.headers.get("X-Request-ID", "")
        if not request_id or len(request_id) > 64 or not set(request_id) <= _REQUEST_ID_OK:
            request_id = uuid.uuid4().hex
        request.request_id = request_id
        token = context.bind(
            context.RequestContext(request_id=request_id, ip=request.META.get("REMOTE_ADDR"))
        )
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ApiBodySizeMiddleware:
    """413 in the API's error shape before a too-large body is read. API views accept
    settings.API_MAX_BODY_BYTES; a view that takes files names a larger setting in its
    `max_body_setting` attribute (read per request, so it follows the settings)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Beyond the largest any view accepts, refuse before even resolving the URL.
        refused = self._refuse(request, settings.API_UPLOAD_MAX_BYTES)
        return refused or self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        view_class = getattr(view_func, "view_class", None) or getattr(view_func, "cls", None)
        setting = getattr(view_class, "max_body_setting", "API_MAX_BODY_BYTES")
        return self._refuse(request, getattr(settings, setting))

    @staticmethod
    def _refuse(request, limit: int):
        if not is_api_path(request.path):
            return None
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= limit:
            return None
        return JsonResponse(
            error_body(
                "payload_too_large",
                f"The request body is {length} bytes; this API accepts at most {limit}.",
            ),
            status=413,
        )


class PageNulMiddleware:
    """A NUL character in a page's path or query (`/store/orders/PLM%00X/`) is a 400 before any
    view runs: Postgres refuses NUL in text, so it would otherwise surface as a 500 from
    whichever query first used the value. API views answer it in their own error shape,
    naming the parameter (plum.api.base.NoNulMixin); forms refuse it field by field."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api_path(request.path) and (
            "\x00" in request.path
            or any("\x00" in value for values in request.GET.lists() for value in values[1])
        ):
            return HttpResponseBadRequest(
                "This address contains a character that is not allowed.",
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    """`Content-Security-Policy: settings.CONTENT_SECURITY_POLICY` on every response that does
    not set its own. Scripts run only from this origin's files: no page of the admin, the ops
    portal, the storefront or the API docs has an inline script or handler, so an injected
    `<script>` or `onerror=` does not run even if escaping ever failed. Inline style attributes
    are allowed (the admin's templates use them); framing is refused (as X-Frame-Options)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
