import pytest

from tests.factories import MemberFactory


@pytest.mark.django_db
def test_member_list_is_scoped_to_the_clients_programme(client_api, programme, other_programme):
    # given
    mine = MemberFactory(programme=programme)
    MemberFactory(programme=other_programme)
    # when
    response = client_api.get("/api/v1/members")
    # then
    assert response.status_code == 200
    assert [row["external_id"] for row in response.json()["results"]] == [mine.external_id]
