from plum.api.base import api_route
from wallets import api

app_name = "wallets-api"

urlpatterns = [
    *api_route(
        "members/<str:external_id>/points", api.PointsEarnApi.as_view(), "member-points-earn"
    ),
    *api_route("members/<str:external_id>/wallet", api.WalletApi.as_view(), "member-wallet"),
]
