"""The admin for channels, endpoints and the delivery log: scoped to the user's programmes
(404 outside), secrets never shown back, every change through the services."""

import pytest

from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Delivery, NotificationChannel, WebhookEndpoint
from plum.services.notifications import notification_channel_create
from plum.services.webhooks import webhook_endpoint_create
from tests.plum.test_webhooks import deliver_due, emit
from tests.plum.webhook_receiver import Receiver

SLACK_URL = "https://hooks.slack.com/services/T01/B02/SeCrEtToKeNvAlUe1234"


@pytest.fixture
def manager(make_user, programme, client):
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    return user


def channel_form(programme, **overrides):
    return {
        "programme": programme.pk,
        "name": "#rewards",
        "kind": "slack",
        "url": SLACK_URL,
        "event_types": ["voucher.generated", "order.pending_approval"],
        "is_active": "on",
        "_save": "Save",
        **overrides,
    }


@pytest.mark.django_db
def test_a_manager_adds_a_channel_and_never_sees_its_url_again(client, manager, programme):
    # when
    response = client.post("/admin/plum/notificationchannel/add/", channel_form(programme))
    # then
    assert response.status_code == 302
    channel = NotificationChannel.objects.get()
    assert channel.event_types == ["order.pending_approval", "voucher.generated"]
    listing = client.get("/admin/plum/notificationchannel/").content.decode()
    page = client.get(f"/admin/plum/notificationchannel/{channel.pk}/change/").content.decode()
    assert "SeCrEtToKeN" not in listing + page
    assert "https://hooks.slack.com/…1234" in listing
    assert AuditEvent.objects.filter(action="notification.channel.create").count() == 1


@pytest.mark.django_db
def test_a_channel_with_an_http_url_is_a_form_error_outside_debug(
    client, manager, programme, settings
):
    settings.WEBHOOK_ALLOW_INSECURE_URLS = False
    response = client.post(
        "/admin/plum/notificationchannel/add/",
        channel_form(programme, url="http://hooks.slack.com/services/x"),
    )
    assert response.status_code == 200
    assert "Enter an https:// URL." in response.content.decode()
    assert not NotificationChannel.objects.exists()


@pytest.mark.django_db
def test_another_programmes_channel_and_endpoint_are_not_found(
    client, manager, other_programme, make_api_client
):
    # given
    channel = notification_channel_create(
        programme=other_programme,
        name="#beta",
        kind="teams",
        url="https://example.webhook.office.com/x",
        event_types=["*"],
        actor=SYSTEM,
    )
    api_client, _ = make_api_client([other_programme])
    endpoint, _ = webhook_endpoint_create(
        client=api_client, url="https://erp.example.com/hook", event_types=["*"], actor=SYSTEM
    )
    # then
    assert client.get(f"/admin/plum/notificationchannel/{channel.pk}/change/").status_code == 404
    assert client.get(f"/admin/plum/webhookendpoint/{endpoint.pk}/change/").status_code == 404
    assert "#beta" not in client.get("/admin/plum/notificationchannel/").content.decode()
    assert "erp.example.com" not in client.get("/admin/plum/webhookendpoint/").content.decode()


@pytest.mark.django_db
def test_adding_an_endpoint_shows_its_secret_once(client, manager, programme, make_api_client):
    # given
    api_client, _ = make_api_client([programme], name="CRM")
    # when
    response = client.post(
        "/admin/plum/webhookendpoint/add/",
        {
            "client": api_client.pk,
            "url": "https://crm.example.com/plum",
            "description": "CRM",
            "event_types": ["*"],
            "is_active": "on",
            "_save": "Save",
        },
        follow=True,
    )
    # then
    endpoint = WebhookEndpoint.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    [secret_message] = [m for m in shown if "shown only now" in m]
    secret = secret_message.rsplit(" ", 1)[-1]
    assert secret.startswith("whsec_")
    page = client.get(f"/admin/plum/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert secret not in page
    assert endpoint.secret_hint in page


@pytest.mark.django_db
def test_the_delivery_log_shows_attempts_and_replays_through_the_service(
    client, manager, programme, make_api_client, settings
):
    # given: a delivery that failed with a 400
    settings.WEBHOOK_ALLOW_INSECURE_URLS = True
    with Receiver() as receiver:
        api_client, _ = make_api_client([programme])
        webhook_endpoint_create(
            client=api_client, url=receiver.url("/hook"), event_types=["*"], actor=SYSTEM
        )
        receiver.script("/hook", (400, 0))
        emit(programme=programme)
        deliver_due()
        delivery = Delivery.objects.get()
        # when: the log is read and the delivery replayed from it
        page = client.get(f"/admin/plum/delivery/{delivery.pk}/change/").content.decode()
        client.post(
            "/admin/plum/delivery/", {"action": "replay", "_selected_action": [delivery.pk]}
        )
        deliver_due()
    # then
    assert "receiver says no" in page and "400" in page
    delivery.refresh_from_db()
    assert (delivery.status, delivery.replays) == ("succeeded", 1)
    assert AuditEvent.objects.get(action="delivery.replay").actor_user_id == manager.pk
