import json
import pytest
from django.test import Client
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_explore(client_api, make_api_client, programme, settings):
    def show(r):
        print(r.status_code, dict(r.headers), r.content[:600])
    for h in [" ", "Bearer", "Bearer a b", "Bearer notakey", "Token xyz", "bearer plum_live_" + "a" * 30]:
        a = APIClient(); a.credentials(HTTP_AUTHORIZATION=h)
        try:
            show(a.get("/api/v1/members"))
        except Exception as e:
            print("EXC", h, repr(e))
    show(client_api.delete("/api/v1/members"))
    show(client_api.post("/api/v1/members", "{bad", content_type="application/json"))
    show(client_api.post("/api/v1/members", "x", content_type="text/plain"))
    show(client_api.post("/api/v1/members", "[1]", content_type="application/json"))
    show(client_api.post("/api/v1/members", "null", content_type="application/json"))
    show(client_api.post("/api/v1/members", {"external_id": "a", "phone": "12345"}, format="json"))
    show(client_api.post("/api/v1/members", {"external_id": "a", "nick": "12345"}, format="json"))
    show(client_api.get("/api/v1/members", HTTP_ACCEPT="text/html"))
    show(client_api.get("/api/v1/nope"))
    show(client_api.get("/api/v1/members", HTTP_HOST="evil.com"))
    r = Client().get("/api/schema/?format=json")
    print(r.status_code, r.headers["Content-Type"])
    s = json.loads(r.content)
    print(list(s["paths"]), s.get("components", {}).get("securitySchemes"), s["paths"]["/api/v1/members"]["get"].get("security"))
    r = Client().get("/api/docs/")
    print(r.status_code, r.content.decode())
    show(Client().get("/healthz"))
