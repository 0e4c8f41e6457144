import pytest
from django.contrib.messages import get_messages

from orders.models import Order
from orders.services import order_issue
from plum import roles
from plum.actors import SYSTEM
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/orders/order/"


@pytest.fixture
def held(programme, make_campaign):
    return make_campaign(programme, approval_mode="manual", max_rewards=1)


def issue(campaign):
    member = MemberFactory(programme=campaign.programme)
    return order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM)


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
def test_the_list_shows_only_the_users_programme(
    client, make_user, programme, other_programme, make_campaign, role
):
    ours = issue(make_campaign(programme))
    theirs = issue(make_campaign(other_programme, name="Beta"))
    client.force_login(make_user(role, programme))
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert ours.booking_id in response.content.decode()
    assert theirs.booking_id not in response.content.decode()
    assert client.get(f"{CHANGELIST}{theirs.pk}/change/").status_code == 404


def test_the_approval_queue_lists_held_orders_only(client, make_user, programme, held, campaign):
    waiting = issue(held)
    done = issue(campaign)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    page = client.get(f"{CHANGELIST}?queue=awaiting").content.decode()
    assert waiting.booking_id in page
    assert done.booking_id not in page


def test_bulk_approve_fulfils_and_reports_refusals(client, make_user, programme, held):
    # given: two held orders and one reward left
    first, second = issue(held), issue(held)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.post(
        CHANGELIST, {"action": "approve", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    # then
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("completed", "pending")
    assert texts(response) == [
        f"Approved 1 order(s): {first.booking_id}.",
        f"Could not approve 1 order(s): {second.booking_id} (campaign_exhausted: "
        "The campaign has issued its maximum number of rewards.).",
    ]


def test_bulk_reject(client, make_user, programme, held):
    order = issue(held)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    client.post(CHANGELIST, {"action": "reject", "_selected_action": [order.pk]})
    order.refresh_from_db()
    assert (order.status, order.approval_state) == ("cancelled", "rejected")


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
def test_view_only_roles_cannot_act(client, make_user, programme, held, role):
    order = issue(held)
    client.force_login(make_user(role, programme))
    client.post(CHANGELIST, {"action": "approve", "_selected_action": [order.pk]})
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
