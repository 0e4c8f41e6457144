"""Base classes every API view and input serializer derives from."""

from django.http import HttpResponse
from django.urls import path
from rest_framework import generics, serializers
from rest_framework.views import APIView

from plum.models import ApiClient
from plum.services.idempotency import (
    IdempotentReplay,
    idempotency_begin,
    idempotency_complete,
    idempotency_release,
    request_fingerprint,
)


class StrictSerializer(serializers.Serializer):
    """An input serializer that rejects fields it does not know instead of ignoring them."""

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().validate(attrs)


class IdempotentMixin:
    """Idempotency-Key handling for POSTs from API clients (ARCHITECTURE.md, Idempotency).

    The key is claimed after authentication and before the handler runs; the rendered response
    is stored byte for byte, except a server error, which frees the key for a retry."""

    _idempotency_record = None
    _idempotency_written = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._idempotency_record = None
        self._idempotency_written = None
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or key is None or not isinstance(request.auth, ApiClient):
            return
        raw = request._request
        # The query string is part of the request: the same body sent with other parameters is
        # another request, not a retry.
        fingerprint = request_fingerprint(
            method=raw.method, path=raw.get_full_path(), body=raw.body
        )
        self._idempotency_record = idempotency_begin(
            client=request.auth, key=key, fingerprint=fingerprint
        )

    def handle_exception(self, exc):
        if isinstance(exc, IdempotentReplay):
            record = exc.record
            response = HttpResponse(
                bytes(record.response_body),
                status=record.response_status,
                content_type=record.response_content_type,
            )
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def respond_in_transaction(self, response):
        """Finalize `response` now, from inside the service's transaction (a callback the
        service runs last): the key's stored response is written in the transaction that made
        the change, so the change and its record commit together. Without it a crash between
        the two commits would leave the key in flight with the change made, and a retry after
        the in-flight timeout would make it again. Should the transaction roll back, the key
        is released as for any server error."""
        self._idempotency_written = self._idempotency_record
        return self.finalize_response(self.request, response, *self.args, **self.kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = self._idempotency_record
        if record is None and response.status_code >= 500 and self._idempotency_written:
            # Stored in a transaction that then failed: the row is in flight again (the
            # release deletes only a key still in flight).
            idempotency_release(record=self._idempotency_written)
            self._idempotency_written = None
        if record is not None:
            self._idempotency_record = None
            if response.status_code >= 500:
                idempotency_release(record=record)
            else:
                if hasattr(response, "render") and not response.is_rendered:
                    response.render()
                idempotency_complete(
                    record=record,
                    status=response.status_code,
                    body=response.content,
                    content_type=response.get("Content-Type", "application/json"),
                )
        return response

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except BaseException:
            for record in {self._idempotency_record, self._idempotency_written} - {None}:
                idempotency_release(record=record)
            raise


class NoNulMixin:
    """A NUL byte in a query parameter or a path segment is a 400 naming it. Postgres refuses
    NUL in text, so without this a view that filters on a raw parameter answered 500 (found
    by the schemathesis run, tests/security). Serializer fields refuse NUL on their own."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, scope and throttle first
        wrong = {
            name: ["Null characters are not allowed."]
            for name, values in request.query_params.lists()
            if "\x00" in name or any("\x00" in value for value in values)
        }
        wrong.update(
            {
                name: ["Null characters are not allowed."]
                for name, value in kwargs.items()
                if isinstance(value, str) and "\x00" in value
            }
        )
        if wrong:
            raise serializers.ValidationError(wrong)


class PlumApiView(NoNulMixin, IdempotentMixin, APIView):
    pass


class PlumListApiView(NoNulMixin, IdempotentMixin, generics.GenericAPIView):
    pass


def api_route(route: str, view, name: str):
    """Route `route` with and without a trailing slash, no redirect between them."""
    route = route.rstrip("/")
    return [path(route, view, name=name), path(f"{route}/", view, name=f"{name}-slash")]
