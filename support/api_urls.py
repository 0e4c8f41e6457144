from plum.api.base import api_route
from support import api

app_name = "support-api"

urlpatterns = [
    *api_route("tickets", api.TicketListCreateApi.as_view(), "ticket-list"),
    *api_route("tickets/<int:ticket_id>", api.TicketDetailApi.as_view(), "ticket-detail"),
    *api_route(
        "tickets/<int:ticket_id>/transition",
        api.TicketTransitionApi.as_view(),
        "ticket-transition",
    ),
    *api_route(
        "tickets/<int:ticket_id>/messages",
        api.TicketMessageCreateApi.as_view(),
        "ticket-messages",
    ),
]
