"""`/api/v1/webhooks`: an API client manages its own outbound webhook endpoints (scope
`manage`). The signing secret is in the response of create and rotate-secret only."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from plum import event_catalog
from plum.api.base import PlumApiView, PlumListApiView, StrictSerializer
from plum.errors import NotFoundError
from plum.models import ApiClient, WebhookEndpoint
from plum.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)

EVENT_TYPE_HELP = 'Event types from the catalogue (see the API description), or "*" for all.'


class WebhookEndpointOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "is_active",
            "secret_hint",
            "previous_secret_expires_at",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "created_at",
        ]


class WebhookEndpointWithSecretOutput(WebhookEndpointOutput):
    secret = serializers.CharField(help_text="Shown only in this response; store it safely.")

    class Meta(WebhookEndpointOutput.Meta):
        fields = [*WebhookEndpointOutput.Meta.fields, "secret"]


class WebhookEndpointInput(StrictSerializer):
    url = serializers.CharField(max_length=500)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(
            choices=[event_catalog.ALL_EVENTS, *event_catalog.EVENT_TYPE_NAMES]
        ),
        allow_empty=False,
        help_text=EVENT_TYPE_HELP,
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class WebhookEndpointPatch(WebhookEndpointInput):
    url = serializers.CharField(max_length=500, required=False)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(
            choices=[event_catalog.ALL_EVENTS, *event_catalog.EVENT_TYPE_NAMES]
        ),
        allow_empty=False,
        required=False,
        help_text=EVENT_TYPE_HELP,
    )
    is_active = serializers.BooleanField(required=False)


def _endpoints_of(principal):
    """A client's own endpoints; nobody else's, and none for a staff session (endpoints belong
    to API clients: staff use the admin)."""
    if not isinstance(principal, ApiClient):
        return WebhookEndpoint.objects.none()
    return WebhookEndpoint.objects.filter(client=principal)


def _endpoint_or_404(request, endpoint_id: int) -> WebhookEndpoint:
    endpoint = _endpoints_of(request.user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFoundError("No such webhook endpoint.")
    return endpoint


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict:
    return {**WebhookEndpointOutput(endpoint).data, "secret": secret}


class WebhookListCreateApi(mixins.ListModelMixin, PlumListApiView):
    """The calling client's webhook endpoints; create one (its secret is in this response only).
    Deliveries carry `Plum-Signature: t=…,v1=…` and `Plum-Event-Id` (docs/webhooks.md)."""

    serializer_class = WebhookEndpointOutput
    required_scope = "manage"

    def get_queryset(self):
        return _endpoints_of(self.request.user)

    @extend_schema(operation_id="webhooks_list")
    def get(self, request):
        return self.list(request)

    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookEndpointInput,
        responses={201: WebhookEndpointWithSecretOutput},
    )
    def post(self, request):
        if not isinstance(request.user, ApiClient):
            raise NotFoundError("Webhook endpoints belong to API clients; use the admin.")
        data = WebhookEndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_create(
            client=request.user, actor=request.user, **data.validated_data
        )
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class WebhookDetailApi(PlumApiView):
    """One endpoint: read, change (url, event types, description, is_active) or deactivate
    (DELETE: the endpoint and its delivery log are kept, inactive)."""

    required_scope = "manage"

    @extend_schema(operation_id="webhooks_retrieve", responses=WebhookEndpointOutput)
    def get(self, request, endpoint_id: int):
        return Response(WebhookEndpointOutput(_endpoint_or_404(request, endpoint_id)).data)

    @extend_schema(
        operation_id="webhooks_update",
        request=WebhookEndpointPatch,
        responses=WebhookEndpointOutput,
    )
    def patch(self, request, endpoint_id: int):
        endpoint = _endpoint_or_404(request, endpoint_id)
        data = WebhookEndpointPatch(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(
            endpoint=endpoint, actor=request.user, data=dict(data.validated_data)
        )
        return Response(WebhookEndpointOutput(endpoint).data)

    @extend_schema(operation_id="webhooks_deactivate", responses={204: None})
    def delete(self, request, endpoint_id: int):
        endpoint = _endpoint_or_404(request, endpoint_id)
        webhook_endpoint_update(endpoint=endpoint, actor=request.user, data={"is_active": False})
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretApi(PlumApiView):
    """A new signing secret (in this response only); the previous one keeps signing too, as a
    second `v1`, for WEBHOOK_SECRET_GRACE (24 h by default)."""

    required_scope = "manage"

    @extend_schema(
        operation_id="webhooks_rotate_secret",
        request=None,
        responses=WebhookEndpointWithSecretOutput,
    )
    def post(self, request, endpoint_id: int):
        endpoint = _endpoint_or_404(request, endpoint_id)
        endpoint, secret = webhook_endpoint_rotate_secret(endpoint=endpoint, actor=request.user)
        return Response(_with_secret(endpoint, secret))
