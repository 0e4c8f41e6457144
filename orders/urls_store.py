"""The member storefront, mounted at /store/ by plum/urls.py."""

from django.urls import path

from orders.views import accounts, pages

app_name = "store"

urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("sign-in/", accounts.StoreLoginView.as_view(), name="login"),
    path("sign-out/", accounts.StoreLogoutView.as_view(), name="logout"),
    path("password-reset/", accounts.StorePasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        accounts.StorePasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        accounts.StorePasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        accounts.StorePasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("invite/<str:token>/", accounts.invite_accept, name="invite"),
    path("rewards/", pages.catalog, name="catalog"),
    path("rewards/<int:campaign_id>/", pages.reward_detail, name="reward"),
    path("rewards/<int:campaign_id>/confirm/", pages.redeem_confirm, name="confirm"),
    path("redeem/", pages.redeem, name="redeem"),
    path("orders/", pages.order_history, name="orders"),
    path("orders/<str:booking_id>/", pages.order_detail, name="order"),
    path("orders/<str:booking_id>/code/", pages.order_reveal, name="reveal"),
]
