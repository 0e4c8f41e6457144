from campaigns import api
from campaigns.services.campaigns import CAMPAIGN_ACTIONS
from plum.api.base import api_route

app_name = "campaigns-api"

urlpatterns = [
    *api_route("rewards", api.RewardListApi.as_view(), "reward-list"),
    *api_route("rewards/<int:reward_id>", api.RewardDetailApi.as_view(), "reward-detail"),
    *api_route("campaigns", api.CampaignListCreateApi.as_view(), "campaign-list"),
    *api_route("campaigns/<int:campaign_id>", api.CampaignDetailApi.as_view(), "campaign-detail"),
    *[
        route
        for transition in CAMPAIGN_ACTIONS
        for route in api_route(
            f"campaigns/<int:campaign_id>/{transition}",
            api.CampaignTransitionApi.as_view(transition=transition),
            f"campaign-{transition}",
        )
    ],
    *api_route(
        "campaigns/<int:campaign_id>/codes",
        api.CampaignCodesGenerateApi.as_view(),
        "campaign-codes-generate",
    ),
    *api_route(
        "campaigns/<int:campaign_id>/codes/import",
        api.CampaignCodesImportApi.as_view(),
        "campaign-codes-import",
    ),
    *api_route("vouchers", api.VoucherListApi.as_view(), "voucher-list"),
    # Before vouchers/<code>: these two words are actions, not codes.
    *api_route("vouchers/extend", api.VouchersExtendApi.as_view(), "voucher-extend"),
    *api_route("vouchers/recover", api.VouchersRecoverApi.as_view(), "voucher-recover"),
    *api_route("vouchers/<str:code>", api.VoucherDetailApi.as_view(), "voucher-detail"),
    *api_route("vouchers/<str:code>/redeem", api.VoucherRedeemApi.as_view(), "voucher-redeem"),
    *api_route("vouchers/<str:code>/flag", api.VoucherFlagApi.as_view(), "voucher-flag"),
    *api_route("vouchers/<str:code>/unflag", api.VoucherUnflagApi.as_view(), "voucher-unflag"),
]
