from orders.api import batch
from orders.api import orders as api
from plum.api.base import api_route

app_name = "orders-api"

urlpatterns = [
    *api_route("issuances", api.IssuanceCreateApi.as_view(), "issuance-create"),
    *api_route("issuances/batch", batch.IssuanceBatchCreateApi.as_view(), "issuance-batch"),
    *api_route("redemptions", api.RedemptionCreateApi.as_view(), "redemption-create"),
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
]
