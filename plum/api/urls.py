from plum.api import views, webhooks
from plum.api.base import api_route

app_name = "api"

urlpatterns = [
    *api_route("programmes", views.ProgrammeListApi.as_view(), "programme-list"),
    *api_route("members", views.MemberListCreateApi.as_view(), "member-list"),
    *api_route("members/<str:external_id>", views.MemberDetailApi.as_view(), "member-detail"),
    *api_route("jobs/<uuid:job_id>", views.JobDetailApi.as_view(), "job-detail"),
    *api_route("webhooks", webhooks.WebhookListCreateApi.as_view(), "webhook-list"),
    *api_route("webhooks/<int:endpoint_id>", webhooks.WebhookDetailApi.as_view(), "webhook-detail"),
    *api_route(
        "webhooks/<int:endpoint_id>/rotate-secret",
        webhooks.WebhookRotateSecretApi.as_view(),
        "webhook-rotate-secret",
    ),
]
