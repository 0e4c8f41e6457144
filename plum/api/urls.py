from plum.api import views
from plum.api.base import api_route

app_name = "api"

urlpatterns = [
    *api_route("programmes", views.ProgrammeListApi.as_view(), "programme-list"),
    *api_route("members", views.MemberListCreateApi.as_view(), "member-list"),
    *api_route("members/<str:external_id>", views.MemberDetailApi.as_view(), "member-detail"),
    *api_route("jobs/<uuid:job_id>", views.JobDetailApi.as_view(), "job-detail"),
]
