from orders.api import batch
from orders.api import delivery as delivery_api
from orders.api import events as events_api
from orders.api import orders as api
from orders.api import payouts as payouts_api
from plum.api.base import api_route

app_name = "orders-api"

urlpatterns = [
    *api_route("issuances", api.IssuanceCreateApi.as_view(), "issuance-create"),
    *api_route("issuances/batch", batch.IssuanceBatchCreateApi.as_view(), "issuance-batch"),
    *api_route("redemptions", api.RedemptionCreateApi.as_view(), "redemption-create"),
    *api_route("events", events_api.EventCreateApi.as_view(), "event-create"),
    # <path:>: event ids are the caller's and may hold a slash (POS/2026/1).
    *api_route("events/<path:event_id>", events_api.EventDetailApi.as_view(), "event-detail"),
    *api_route("orders", api.OrderListApi.as_view(), "order-list"),
    # Before orders/<booking_id>: "counts" is not a booking id.
    *api_route("orders/counts", api.OrderCountsApi.as_view(), "order-counts"),
    *api_route("orders/<str:booking_id>", api.OrderDetailApi.as_view(), "order-detail"),
    *[
        route
        for action in api.ORDER_ACTIONS
        for route in api_route(
            f"orders/<str:booking_id>/{action}",
            api.OrderActionApi.as_view(action_name=action),
            f"order-{action}",
        )
    ],
    *api_route("payouts", payouts_api.PayoutListApi.as_view(), "payout-list"),
    *api_route("deliveries", delivery_api.DeliveryListApi.as_view(), "delivery-list"),
    *api_route(
        "deliveries/<int:delivery_id>/resend",
        delivery_api.DeliveryResendApi.as_view(),
        "delivery-resend",
    ),
    *api_route(
        "delivery-receipts/<slug:provider>",
        delivery_api.DeliveryReceiptApi.as_view(),
        "delivery-receipt",
    ),
]

from orders.api import uploads as upload_api  # noqa: E402

urlpatterns += [
    *api_route("uploads", upload_api.UploadListCreateApi.as_view(), "upload-list"),
    # Before uploads/<id>: "template" is not an id.
    *api_route("uploads/template", upload_api.UploadTemplateApi.as_view(), "upload-template"),
    *api_route("uploads/<int:upload_id>", upload_api.UploadDetailApi.as_view(), "upload-detail"),
    *api_route(
        "uploads/<int:upload_id>/errors", upload_api.UploadErrorsApi.as_view(), "upload-errors"
    ),
    *api_route(
        "uploads/<int:upload_id>/confirm", upload_api.UploadConfirmApi.as_view(), "upload-confirm"
    ),
]
