"""Who gets into the ops portal: anonymous → sign-in, a non-agent → 403, an agent → in."""

import pytest
from django.urls import reverse

from plum import roles

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_sign_in(client):
    # when
    response = client.get(reverse("ops:home"))

    # then
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('ops:login')}?next=%2Fops%2F"


@pytest.mark.parametrize("role", [roles.FINANCE, roles.MEMBER])
def test_a_user_who_is_no_agent_gets_403(client, make_user, programme, role):
    # given
    client.force_login(make_user(role=role, programme=programme))

    # when
    response = client.get(reverse("ops:home"))

    # then
    assert response.status_code == 403
    assert b"for support agents" in response.content


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.PROGRAMME_MANAGER])
def test_an_agent_sees_only_their_programmes(client, make_user, programme, other_programme, role):
    # given
    client.force_login(make_user(role=role, programme=programme))

    # when
    response = client.get(reverse("ops:home"))

    # then
    assert response.status_code == 200
    assert list(response.context["programmes"]) == [programme]
