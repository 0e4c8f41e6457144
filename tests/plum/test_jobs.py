"""Jobs: long work with progress a person can watch (plum.services.jobs), its API
(GET /api/v1/jobs/{id}) and its admin changelist.

Celery is eager without REDIS_URL and a real queue with it; tests call `job_run` themselves
after the commit hook has run, and check that running a job twice does the work once, so they
hold in both set-ups."""

import uuid

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from plum import roles, selectors
from plum.actors import SYSTEM
from plum.errors import PlumError
from plum.models import AuditEvent, Job
from plum.services import jobs
from plum.services.jobs import job_create, job_progress, job_run, register_job_handler

KIND = "tests.count"


@pytest.fixture
def handlers(monkeypatch):
    """A private handler registry for the test, so registrations do not leak."""
    monkeypatch.setattr(jobs, "_handlers", dict(jobs._handlers))
    return jobs._handlers


@pytest.fixture
def counting(handlers):
    """A handler that counts to `total`, reporting progress after each step and recording the
    `done` a reader sees in the database at that moment."""
    calls = {"runs": 0, "seen": []}

    @register_job_handler(KIND)
    def count(job, progress):
        calls["runs"] += 1
        for step in range(1, job.total + 1):
            progress(step)
            calls["seen"].append(Job.objects.get(pk=job.pk).done)
        return {"counted": job.total, "label": job.params["label"]}

    return calls


def make_job(*, programme, total=4, kind=KIND, actor=SYSTEM) -> Job:
    return job_create(
        kind=kind, programme=programme, total=total, params={"label": "demo"}, actor=actor
    )


# service ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_job_created_in_a_transaction_runs_once_after_commit(
    counting, programme, django_capture_on_commit_callbacks
):
    # given
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        job = make_job(programme=programme)
        queued = Job.objects.get(pk=job.pk).status
    # when: eager Celery already ran it on commit; a real queue leaves it to a worker
    job_run(job_id=job.pk)
    second = job_run(job_id=job.pk)
    # then
    job.refresh_from_db()
    assert queued == "queued"
    assert len(callbacks) == 1
    assert second is None
    assert counting == {"runs": 1, "seen": [1, 2, 3, 4]}
    assert (job.status, job.total, job.done, job.percent) == ("succeeded", 4, 4, 100)
    assert job.result == {"counted": 4, "label": "demo"}
    assert job.errors == []
    assert job.started_at is not None
    assert job.finished_at >= job.started_at


@pytest.mark.django_db
def test_job_is_not_scheduled_when_its_transaction_rolls_back(
    counting, programme, django_capture_on_commit_callbacks
):
    # given
    class AbortError(Exception):
        pass

    # when
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(AbortError),
        transaction.atomic(),
    ):
        make_job(programme=programme)
        raise AbortError
    # then
    assert callbacks == []
    assert Job.objects.count() == 0
    assert counting["runs"] == 0


@pytest.mark.django_db
def test_job_create_is_audited(counting, programme, make_user):
    # given
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    # when
    job = make_job(programme=programme, actor=user)
    # then
    event = AuditEvent.objects.get(action="job.create")
    assert (event.object_type, event.object_id, event.programme_id, event.actor_user_id) == (
        "plum.job",
        str(job.pk),
        programme.pk,
        user.pk,
    )
    assert event.changes == {"kind": [None, KIND]}
    assert (job.created_by_user_id, job.created_by_client_id) == (user.pk, None)


@pytest.mark.django_db
def test_job_create_by_an_api_client_records_it(counting, client_api, programme):
    # when
    job = make_job(programme=programme, actor=client_api.plum_client)
    # then
    assert (job.created_by_user_id, job.created_by_client_id) == (None, client_api.plum_client.pk)


@pytest.mark.django_db
def test_job_create_of_an_unknown_kind_is_refused(handlers, programme):
    # when
    with pytest.raises(ValueError, match="No job handler is registered for 'tests.nope'"):
        make_job(programme=programme, kind="tests.nope")
    # then
    assert Job.objects.count() == 0
    assert AuditEvent.objects.filter(action="job.create").count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ValueError("row 7 has no e-mail"), "ValueError: row 7 has no e-mail"),
        (PlumError("The upload has no rows."), "The upload has no rows."),
    ],
)
def test_a_handler_that_raises_ends_the_job_failed_with_the_message(
    handlers, programme, error, message
):
    # given
    @register_job_handler(KIND)
    def explode(job, progress):
        progress(2)
        raise error

    job = make_job(programme=programme)
    # when
    job_run(job_id=job.pk)
    again = job_run(job_id=job.pk)
    # then
    job.refresh_from_db()
    assert again is None
    assert (job.status, job.done, job.total, job.percent) == ("failed", 2, 4, 50)
    assert job.errors == [{"message": message}]
    assert job.result == {}
    assert job.finished_at is not None


@pytest.mark.django_db
def test_a_job_whose_handler_disappeared_fails(handlers, programme):
    # given
    @register_job_handler(KIND)
    def noop(job, progress):
        return {}

    job = make_job(programme=programme)
    del handlers[KIND]
    # when
    job_run(job_id=job.pk)
    # then
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.errors == [{"message": "No handler for job kind 'tests.count'"}]


@pytest.mark.django_db
def test_handler_errors_returned_with_the_result_are_kept(handlers, programme):
    # given
    @register_job_handler(KIND)
    def partial(job, progress):
        return {"imported": 3, "errors": [{"row": 4, "message": "bad phone"}]}

    job = make_job(programme=programme)
    # when
    job_run(job_id=job.pk)
    # then
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.result == {"imported": 3}
    assert job.errors == [{"row": 4, "message": "bad phone"}]


@pytest.mark.django_db
@pytest.mark.parametrize(("done", "expected"), [(0, 0), (3, 3), (10, 10), (11, 10), (500, 10)])
def test_progress_never_passes_the_total(counting, programme, done, expected):
    # given
    job = make_job(programme=programme, total=10)
    # when
    job_progress(job_id=job.pk, done=done)
    # then
    assert Job.objects.get(pk=job.pk).done == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "total", "done", "percent"),
    [
        ("queued", 0, 0, 0),
        ("succeeded", 0, 0, 100),
        ("running", 3, 1, 33),
        ("running", 3, 2, 66),
        ("running", 3, 3, 100),
    ],
)
def test_percent(status, total, done, percent):
    # then
    assert Job(status=status, total=total, done=done).percent == percent


# API ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_shows_a_finished_job(counting, client_api, programme):
    # given
    job = make_job(programme=programme)
    job_run(job_id=job.pk)
    job.refresh_from_db()
    # when
    response = client_api.get(f"/api/v1/jobs/{job.pk}")
    # then
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in body if not k.endswith("_at")} == {
        "id": str(job.pk),
        "kind": KIND,
        "programme": "alpha",
        "status": "succeeded",
        "total": 4,
        "done": 4,
        "percent": 100,
        "result": {"counted": 4, "label": "demo"},
        "errors": [],
    }
    assert sorted(k for k in body if k.endswith("_at")) == [
        "created_at",
        "finished_at",
        "started_at",
    ]


@pytest.mark.django_db
def test_api_shows_progress_while_the_job_runs(handlers, client_api, programme):
    # given: the handler looks at the API halfway through, as a watching client would
    seen = []

    @register_job_handler(KIND)
    def halfway(job, progress):
        progress(2)
        seen.append(client_api.get(f"/api/v1/jobs/{job.pk}").json())
        return {}

    job = make_job(programme=programme)
    # when
    job_run(job_id=job.pk)
    # then
    assert [(s["status"], s["total"], s["done"], s["percent"]) for s in seen] == [
        ("running", 4, 2, 50)
    ]
    assert seen[0]["started_at"] is not None
    assert seen[0]["finished_at"] is None


@pytest.mark.django_db
def test_api_shows_a_failed_job_with_its_errors(handlers, client_api, programme):
    # given
    @register_job_handler(KIND)
    def explode(job, progress):
        raise PlumError("The upload has no rows.")

    job = make_job(programme=programme)
    job_run(job_id=job.pk)
    # when
    response = client_api.get(f"/api/v1/jobs/{job.pk}")
    # then
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["errors"]) == (
        "failed",
        [{"message": "The upload has no rows."}],
    )


@pytest.mark.django_db
def test_api_job_of_another_programme_is_404(counting, client_api, other_programme):
    # given
    job = make_job(programme=other_programme)
    # when
    response = client_api.get(f"/api/v1/jobs/{job.pk}")
    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "No such job.", "fields": {}}
    }


@pytest.mark.django_db
def test_api_missing_job_is_404(client_api):
    # when
    response = client_api.get(f"/api/v1/jobs/{uuid.uuid4()}")
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_api_job_without_a_programme_is_visible_to_its_creating_client_only(
    counting, client_api, make_api_client, programme
):
    # given
    job = make_job(programme=None, actor=client_api.plum_client)
    _, other_key = make_api_client([programme], name="Other client")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    # when
    mine = client_api.get(f"/api/v1/jobs/{job.pk}")
    theirs = other.get(f"/api/v1/jobs/{job.pk}")
    # then
    assert (mine.status_code, theirs.status_code) == (200, 404)


@pytest.mark.django_db
def test_api_job_is_refused_to_a_client_without_the_read_scope(
    counting, make_api_client, programme
):
    # given
    job = make_job(programme=programme)
    _, key = make_api_client([programme], scopes=["manage"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    # when
    response = api.get(f"/api/v1/jobs/{job.pk}")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.django_db
def test_api_job_is_refused_to_anonymous(counting, api, programme):
    # given
    job = make_job(programme=programme)
    # when
    response = api.get(f"/api/v1/jobs/{job.pk}")
    # then
    assert response.status_code == 401


# selector --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "on_own", "on_other"),
    [
        (roles.PROGRAMME_MANAGER, True, False),
        (roles.SUPPORT_AGENT, True, False),
        (roles.FINANCE, True, False),
        (roles.MEMBER, False, False),
    ],
)
def test_job_get_for_a_role_on_programme_a(
    counting, make_user, programme, other_programme, role, on_own, on_other
):
    # given
    user = make_user(role, programme)
    own, other = make_job(programme=programme), make_job(programme=other_programme)
    # when
    visible = (
        selectors.job_get_for(principal=user, job_id=own.pk) == own,
        selectors.job_get_for(principal=user, job_id=other.pk) == other,
    )
    # then
    assert visible == (on_own, on_other)


@pytest.mark.django_db
def test_job_without_a_programme_is_visible_to_its_creator_and_platform_admins(
    counting, make_user, programme
):
    # given
    creator = make_user(roles.PROGRAMME_MANAGER, programme)
    manager = make_user(roles.PROGRAMME_MANAGER, programme)
    platform_admin = make_user(roles.PLATFORM_ADMIN)
    job = make_job(programme=None, actor=creator)
    # when
    visible = [
        selectors.job_get_for(principal=principal, job_id=job.pk) == job
        for principal in (creator, manager, platform_admin)
    ]
    # then
    assert visible == [True, False, True]


# admin ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_job_changelist_renders_a_progress_bar(
    counting, client, make_user, programme, other_programme
):
    # given
    job = make_job(programme=programme)
    job_progress(job_id=job.pk, done=2)
    hidden = make_job(programme=other_programme)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get("/admin/plum/job/")
    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert [j.pk for j in response.context["cl"].result_list] == [job.pk]
    assert '<progress max="100" value="50" aria-label="progress">50%</progress> 2 / 4' in content
    assert str(hidden.pk) not in content


@pytest.mark.django_db
def test_admin_job_change_page_of_another_programme_is_404(
    counting, client, make_user, programme, other_programme
):
    # given
    job = make_job(programme=other_programme)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(f"/admin/plum/job/{job.pk}/change/")
    # then
    assert response.status_code == 404


@pytest.mark.django_db
def test_admin_job_change_page_shows_the_progress_bar(counting, client, make_user, programme):
    # given
    job = make_job(programme=programme)
    job_run(job_id=job.pk)
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(f"/admin/plum/job/{job.pk}/change/")
    # then
    assert response.status_code == 200
    assert '<progress max="100" value="100" aria-label="progress">100%</progress> 4 / 4' in (
        response.content.decode()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("viewer", "expected"),
    [("creator", ["own"]), ("other manager", []), ("platform admin", ["own", "system"])],
)
def test_admin_jobs_without_a_programme_are_shown_to_their_creator_and_platform_admins(
    counting, client, make_user, programme, viewer, expected
):
    # given
    users = {
        "creator": make_user(roles.PROGRAMME_MANAGER, programme),
        "other manager": make_user(roles.PROGRAMME_MANAGER, programme),
        "platform admin": make_user(roles.PLATFORM_ADMIN),
    }
    labels = {
        make_job(programme=None, actor=users["creator"]).pk: "own",
        make_job(programme=None, actor=SYSTEM).pk: "system",
    }
    client.force_login(users[viewer])
    # when
    response = client.get("/admin/plum/job/")
    # then
    assert response.status_code == 200
    assert sorted(labels[j.pk] for j in response.context["cl"].result_list) == expected


@pytest.mark.django_db
def test_a_running_job_whose_worker_was_lost_is_failed_and_a_live_one_is_left(programme):
    # given: two running jobs, one silent for 20 minutes, one that just reported progress
    from datetime import timedelta

    from django.utils import timezone

    from plum.models import Job
    from plum.services.jobs import job_fail_stale

    now = timezone.now()
    lost = Job.objects.create(
        kind="x",
        programme=programme,
        status="running",
        total=10,
        heartbeat_at=now - timedelta(minutes=20),
    )
    alive = Job.objects.create(
        kind="x", programme=programme, status="running", total=10, heartbeat_at=now
    )
    # when
    failed = job_fail_stale(stale_after=timedelta(minutes=15))
    again = job_fail_stale(stale_after=timedelta(minutes=15))
    # then
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert (failed, again) == (1, 0)
    assert (lost.status, lost.errors) == (
        "failed",
        [{"message": "The worker running this job was lost; run it again."}],
    )
    assert alive.status == "running"
