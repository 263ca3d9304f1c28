"""Which Atlassian site a connection works in, the daily re-read of a grant's sites, and the
grant shared by connections on several tenant sites (issue 11, "Which Atlassian site").

Everything goes over real HTTP to the fake Atlassian: its accounts' sites are what a test
changes (``add_account`` replaces an account, sites included), then the callback or the sync
reads them from accessible-resources as in production.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sites.models import Site
from django.test import Client
from django.utils import timezone, translation

from atlassian_oauth import beat, resources, tasks
from atlassian_oauth.api import NotConnected, SiteChoiceRequired, get_session
from atlassian_oauth.models import Connection, Grant, Resource
from atlassian_oauth.resources import SiteState, SyncResult
from atlassian_oauth.testing import ACME_CLOUD_ID, ADA_ACCOUNT_ID, GLOBEX_CLOUD_ID, FakeAtlassian
from tests.flow_helpers import connect, messages_of
from tests.refresh_helpers import expire

pytestmark = pytest.mark.django_db

HOST = "localhost"
OTHER_HOST = "127.0.0.1"
INITECH_CLOUD_ID = "7e1b5c1a-8f2d-4c1e-9a77-initech00001"
MYSELF = "rest/api/3/myself"
CANNOT = "That Atlassian site cannot be chosen. Choose one of the sites listed."
JIRA_AND_CONFLUENCE = (
    "read:jira-user read:jira-work read:confluence-content.all read:me offline_access"
)


def site(cloud_id: str, name: str, product: str = "jira") -> dict[str, str]:
    return {
        "id": cloud_id,
        "name": name,
        "url": f"https://{name}.atlassian.net",
        "product": product,
    }


ACME = site(ACME_CLOUD_ID, "acme")
INITECH = site(INITECH_CLOUD_ID, "initech")
GLOBEX = site(GLOBEX_CLOUD_ID, "globex")


def ada_reaches(fake: FakeAtlassian, *sites: dict[str, str]) -> None:
    """Give Ada's Atlassian account exactly these sites (at the fake)."""
    fake.add_account(ADA_ACCOUNT_ID, "ada@example.com", "Ada Lovelace", sites)


def alice_user() -> Any:
    return get_user_model().objects.get(username="alice")


def localhost() -> Site:
    return Site.objects.get(domain=HOST)


def the_connection(domain: str = HOST) -> Connection:
    return Connection.objects.select_related("jira_resource", "confluence_resource").get(
        user__username="alice", site__domain=domain
    )


def listed(product: str = "jira") -> dict[str, Resource]:
    return {r.name: r for r in Resource.objects.all() if r.product == product}


def status_page(client: Client, host: str = HOST) -> str:
    response = client.get("/atlassian/", HTTP_HOST=host)
    assert response.status_code == 200
    return response.content.decode()


def choose(client: Client, product: str, resource: Resource | int | str, host: str = HOST):
    value = resource.pk if isinstance(resource, Resource) else resource
    return client.post("/atlassian/site/", {"product": product, "resource": value}, HTTP_HOST=host)


def sync() -> resources.SyncOutcome:
    return resources.sync(Grant.objects.get().pk, force=True)


# ---- the default site -------------------------------------------------------------------------


def test_the_only_jira_site_is_chosen_at_connect_and_jira_url_uses_it(
    alice_client, accepting, django_assert_num_queries
):
    connect(alice_client)  # Ada reaches acme only (for Jira, with the default scopes)
    connection = the_connection()
    assert connection.jira_resource is not None
    assert connection.jira_resource.cloud_id == ACME_CLOUD_ID
    assert connection.confluence_resource is None

    session = get_session(alice_user(), localhost())
    # Loaded with the connection: building the URL asks the database nothing.
    with django_assert_num_queries(0):
        url = session.jira_url(MYSELF)
    assert url == f"{accepting.url}/ex/jira/{ACME_CLOUD_ID}/{MYSELF}"
    assert session.get(url).json()["emailAddress"] == "ada@example.com"
    assert [r.cloud_id for r in session.resources] == [ACME_CLOUD_ID]
    with pytest.raises(NotConnected, match="reaches no confluence site"):
        session.confluence_url("wiki/api/v2/spaces")


def test_several_jira_sites_wait_for_the_users_choice(alice_client, accepting):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    assert the_connection().jira_resource is None
    session = get_session(alice_user(), localhost())
    assert sorted(r.name for r in session.resources) == ["acme", "initech"]
    with pytest.raises(SiteChoiceRequired, match="several Jira sites") as raised:
        session.jira_url(MYSELF)
    assert raised.value.product == "jira"
    assert raised.value.reason == SiteChoiceRequired.SEVERAL
    assert "atlassian_oauth:status" in str(raised.value)

    page = status_page(alice_client)
    assert "This account reaches several Jira sites. Choose the one this site works with." in page
    assert page.count('name="resource"') == 2
    assert 'action="/atlassian/site/"' in page and "csrfmiddlewaretoken" in page
    assert "Use this Jira site" in page

    response = choose(alice_client, "jira", listed()["initech"])
    assert response.status_code == 302 and response["Location"] == "/atlassian/"
    assert messages_of(response)[-1] == "This site now works with the Jira site initech."
    assert the_connection().jira_resource == listed()["initech"]

    session = get_session(alice_user(), localhost())
    url = session.jira_url(MYSELF)
    assert url.endswith(f"/ex/jira/{INITECH_CLOUD_ID}/{MYSELF}")
    assert session.get(url).status_code == 200  # the fake's Jira answers on initech for Ada
    page = status_page(alice_client)
    assert "Choose the one this site works with" not in page
    # The choice stays on the page, to change later; the site in use is checked.
    assert f'value="{listed()["initech"].pk}" required checked' in page


def test_the_choice_can_be_changed_later(alice_client, accepting):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    choose(alice_client, "jira", listed()["initech"])
    response = choose(alice_client, "jira", listed()["acme"])
    assert messages_of(response)[-1] == "This site now works with the Jira site acme."
    assert get_session(alice_user(), localhost()).jira_url().endswith(f"/ex/jira/{ACME_CLOUD_ID}/")


def test_jira_and_confluence_each_have_their_own_default(alice_client, accepting, oauth_settings):
    oauth_settings(SCOPES=JIRA_AND_CONFLUENCE)
    ada_reaches(
        accepting,
        ACME,
        site(ACME_CLOUD_ID, "acme", "confluence"),
        site(INITECH_CLOUD_ID, "initech", "confluence"),
    )
    connect(alice_client)
    connection = the_connection()
    assert connection.jira_resource == listed("jira")["acme"]  # the only Jira site
    assert connection.confluence_resource is None  # two Confluence sites: the user chooses
    session = get_session(alice_user(), localhost())
    assert session.jira_url().endswith(f"/ex/jira/{ACME_CLOUD_ID}/")
    with pytest.raises(SiteChoiceRequired, match="several Confluence sites"):
        session.confluence_url("wiki/api/v2/spaces")
    page = status_page(alice_client)
    assert "Choose the one this site works with" in page
    assert "Use this Confluence site" in page and "Use this Jira site" not in page

    # A Confluence site is no choice for Jira, nor the other way round.
    response = choose(alice_client, "jira", listed("confluence")["initech"])
    assert messages_of(response)[-1] == CANNOT
    assert the_connection().jira_resource == listed("jira")["acme"]

    choose(alice_client, "confluence", listed("confluence")["initech"])
    session = get_session(alice_user(), localhost())
    assert session.confluence_url("wiki").endswith(f"/ex/confluence/{INITECH_CLOUD_ID}/wiki")
    assert session.jira_url().endswith(f"/ex/jira/{ACME_CLOUD_ID}/")


def test_get_never_chooses_and_post_needs_the_csrf_token(alice_client, accepting, alice):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    initech = listed()["initech"]
    response = alice_client.get(
        "/atlassian/site/", {"product": "jira", "resource": initech.pk}, HTTP_HOST=HOST
    )
    assert response.status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    response = strict.post(
        "/atlassian/site/", {"product": "jira", "resource": initech.pk}, HTTP_HOST=HOST
    )
    assert response.status_code == 403
    assert the_connection().jira_resource is None


def test_only_a_site_of_the_users_own_grant_can_be_chosen(alice_client, accepting, bob):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    # Bob connects another account (globex) on the same site.
    bob_client = Client()
    bob_client.force_login(bob)
    grace = accepting.add_account("grace-2", "grace@example.com", "Grace Hopper", [GLOBEX])
    accepting.consent_account_id = grace["account_id"]
    connect(bob_client)
    globex = Resource.objects.get(name="globex")
    cases: list[tuple[str, int | str]] = [
        ("jira", globex.pk),  # bob's
        ("jira", "x"),
        ("jira", ""),
        ("bugzilla", 1),
    ]
    for product, value in cases:
        response = choose(alice_client, product, value)
        assert messages_of(response)[-1] == CANNOT
    assert the_connection().jira_resource is None


def test_nothing_to_choose_without_a_connection(alice_client, fake_atlassian):
    response = choose(alice_client, "jira", "1")
    assert messages_of(response)[-1] == "Jira is not connected, so there is no site to choose."


def test_a_reconnect_keeps_the_choice_and_another_account_forgets_it(alice_client, accepting):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    choose(alice_client, "jira", listed()["initech"])
    connect(alice_client)  # the same account again: the same sites, the same rows
    assert the_connection().jira_resource == listed()["initech"]

    accepting.add_account("grace-2", "grace@example.com", "Grace Hopper", [GLOBEX])
    accepting.consent_account_id = "grace-2"
    connect(alice_client)  # another Atlassian account: its own (only) site
    connection = the_connection()
    assert connection.jira_resource is not None
    assert connection.jira_resource.name == "globex"
    assert connection.jira_resource.grant_id == connection.grant_id


# ---- the sync ----------------------------------------------------------------------------------


def test_sync_adds_a_site_granted_later_and_removes_one_taken_away(alice_client, accepting):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    choose(alice_client, "jira", listed()["acme"])
    reads = accepting.counts["accessible_resources"]

    ada_reaches(accepting, ACME, INITECH, GLOBEX)
    outcome = sync()
    assert outcome.result == SyncResult.SYNCED
    assert outcome.changes.added == ("globex (Jira)",) and outcome.changes.removed == ()
    assert accepting.counts["accessible_resources"] == reads + 1  # read over HTTP
    assert sorted(listed()) == ["acme", "globex", "initech"]
    assert sorted(r.name for r in get_session(alice_user(), localhost()).resources) == [
        "acme",
        "globex",
        "initech",
    ]

    ada_reaches(accepting, ACME, GLOBEX)  # initech's admin took Ada's access away
    outcome = sync()
    assert outcome.changes.removed == ("initech (Jira)",) and outcome.changes.added == ()
    assert sorted(listed()) == ["acme", "globex"]
    # Nobody's default, so nothing of it is kept.
    assert not Resource.all_objects.filter(name="initech").exists()
    # The chosen site is untouched and still used.
    assert get_session(alice_user(), localhost()).jira_url().endswith(f"/ex/jira/{ACME_CLOUD_ID}/")
    assert Grant.objects.get().resources_synced_at is not None


def test_a_chosen_site_that_went_is_named_to_the_user_and_in_admin(
    alice_client, accepting, admin_client
):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    choose(alice_client, "jira", listed()["acme"])
    ada_reaches(accepting, INITECH)
    sync()

    connection = the_connection()
    assert connection.jira_resource is not None and connection.jira_resource.removed_at
    assert sorted(listed()) == ["initech"]  # what the grant reaches: acme is not handed out
    session = get_session(alice_user(), localhost())
    with pytest.raises(SiteChoiceRequired, match="acme the user chose is no longer reachable"):
        session.jira_url(MYSELF)
    assert [r.name for r in session.resources] == ["initech"]

    page = status_page(alice_client)
    assert (
        "The Jira site acme you chose is no longer reachable with this account; "
        "choose another." in page
    )
    assert page.count('name="resource"') == 1

    listing = admin_client.get("/admin/atlassian_oauth/connection/", HTTP_HOST=HOST)
    assert "Chosen Jira site acme no longer reachable" in listing.content.decode()
    gone = admin_client.get(
        "/admin/atlassian_oauth/connection/?chosen_site=gone", HTTP_HOST=HOST
    ).content.decode()
    assert f"/admin/atlassian_oauth/connection/{connection.pk}/change/" in gone
    detail = admin_client.get(
        f"/admin/atlassian_oauth/connection/{connection.pk}/change/", HTTP_HOST=HOST
    ).content.decode()
    assert "Jira: acme is no longer reachable; the user has to choose another" in detail

    # Choosing another ends it: the gone site's row goes, the new one is used.
    choose(alice_client, "jira", listed()["initech"])
    assert not Resource.all_objects.filter(name="acme").exists()
    assert (
        get_session(alice_user(), localhost()).jira_url().endswith(f"/ex/jira/{INITECH_CLOUD_ID}/")
    )
    healthy = admin_client.get(
        "/admin/atlassian_oauth/connection/?chosen_site=gone", HTTP_HOST=HOST
    )
    assert f"/admin/atlassian_oauth/connection/{connection.pk}/change/" not in (
        healthy.content.decode()
    )


def test_a_site_that_comes_back_is_the_chosen_one_again(alice_client, accepting):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    choose(alice_client, "jira", listed()["acme"])
    acme_pk = listed()["acme"].pk
    ada_reaches(accepting, INITECH)
    sync()
    ada_reaches(accepting, ACME, INITECH)
    assert sync().changes.added == ("acme (Jira)",)
    assert listed()["acme"].pk == acme_pk
    assert get_session(alice_user(), localhost()).jira_url().endswith(f"/ex/jira/{ACME_CLOUD_ID}/")


def test_a_gone_site_with_nothing_left_to_choose(alice_client, accepting):
    connect(alice_client)  # acme, chosen automatically
    ada_reaches(accepting)
    sync()
    with pytest.raises(SiteChoiceRequired) as raised:
        get_session(alice_user(), localhost()).jira_url()
    assert raised.value.reason == SiteChoiceRequired.UNREACHABLE
    page = status_page(alice_client)
    assert "The Jira site acme you chose is no longer reachable" in page
    assert "This account reaches no other Jira site." in page
    assert 'name="resource"' not in page


def test_a_site_appearing_next_to_the_only_one_leaves_the_default_alone(alice_client, accepting):
    connect(alice_client)  # acme, the only one: chosen automatically
    ada_reaches(accepting, ACME, INITECH)
    sync()
    assert the_connection().jira_resource == listed()["acme"]
    assert get_session(alice_user(), localhost()).jira_url().endswith(f"/ex/jira/{ACME_CLOUD_ID}/")
    # Two sites now: the status page offers the change.
    assert "Use this Jira site" in status_page(alice_client)


def test_sync_takes_the_token_through_the_refresh_path(alice_client, accepting):
    connect(alice_client)
    grant = Grant.objects.get()
    expire(grant)
    ada_reaches(accepting, ACME, INITECH)
    assert sync().result == SyncResult.SYNCED
    assert accepting.counts["refresh"] == 1
    assert Grant.objects.get().version == grant.version + 1
    assert sorted(listed()) == ["acme", "initech"]


def test_sync_renews_a_token_refused_early_and_reads_once_more(alice_client, accepting):
    connect(alice_client)
    ada_reaches(accepting, ACME, INITECH)
    accepting.inject("accessible_resources", status=401, body={"code": 401, "message": "no"})
    assert sync().result == SyncResult.SYNCED
    assert accepting.counts["refresh"] == 1
    assert sorted(listed()) == ["acme", "initech"]


def test_sync_leaves_the_sites_alone_when_atlassian_fails(alice_client, accepting):
    connect(alice_client)
    accepting.inject("accessible_resources", status=503, times=1)
    outcome = sync()
    assert outcome.result == SyncResult.FAILED and "503" in outcome.error
    assert sorted(listed()) == ["acme"]


def test_sync_skips_dead_recent_and_missing_grants(alice_client, accepting):
    connect(alice_client)
    grant = Grant.objects.get()
    reads = accepting.counts["accessible_resources"]
    # Read at connect: the daily sync leaves it for a day.
    assert resources.sync(grant.pk).result == SyncResult.RECENT
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NEEDS_RECONNECT)
    assert resources.sync(grant.pk, force=True).result == SyncResult.DEAD
    assert resources.sync(grant.pk + 1000).result == SyncResult.GONE
    assert accepting.counts["accessible_resources"] == reads


def test_the_daily_task_enqueues_each_due_grant_by_id_spaced_apart(alice_client, accepting, bob):
    connect(alice_client)
    connect(alice_client, host=OTHER_HOST)  # the same grant: one read
    grace = accepting.add_account("grace-2", "grace@example.com", "Grace Hopper", [GLOBEX])
    accepting.consent_account_id = grace["account_id"]
    bob_client = Client()
    bob_client.force_login(bob)
    connect(bob_client)
    assert Grant.objects.count() == 2
    assert tasks.sync_resources.apply().get() == 0  # both read at connect
    Grant.objects.update(resources_synced_at=timezone.now() - resources.RESYNC_AFTER)

    with mock.patch.object(tasks.sync_grant_resources, "apply_async") as enqueued:
        assert tasks.sync_resources.apply().get() == 2
    assert [call.args[0] for call in enqueued.call_args_list] == [
        (pk,) for pk in Grant.objects.order_by("pk").values_list("pk", flat=True)
    ]
    countdowns = [call.kwargs["countdown"] for call in enqueued.call_args_list]
    assert countdowns == [0.0, resources.SYNC_SPACING]
    for call in enqueued.call_args_list:
        assert set(call.kwargs) == {"countdown", "expires", "soft_time_limit", "time_limit"}
        assert call.kwargs["soft_time_limit"] < call.kwargs["time_limit"]

    # A worker delivering them: read once; a second delivery finds them read.
    for call in enqueued.call_args_list:
        assert tasks.sync_grant_resources.apply(args=call.args[0]).get() == "synced"
        assert tasks.sync_grant_resources.apply(args=call.args[0]).get() == "recent"


def test_the_beat_schedule_has_the_daily_sync():
    entry = beat.BEAT_SCHEDULE["atlassian-oauth-sync-resources"]
    assert entry["task"] == beat.SYNC_RESOURCES_TASK == tasks.sync_resources.name
    assert entry["schedule"] == 86400.0
    assert tasks.sync_grant_resources.rate_limit == "1/s"


# ---- one grant, several tenant sites ------------------------------------------------------------


def test_a_grant_shared_with_another_site_is_said_on_the_status_page_and_in_admin(
    alice_client, accepting, admin_client
):
    connect(alice_client)
    page = status_page(alice_client)
    assert "Also connected on" not in page
    connect(alice_client, host=OTHER_HOST)  # the same Atlassian account on the other tenant
    assert Grant.objects.count() == 1 and Connection.objects.count() == 2

    assert "Also connected on 127.0.0.1: reconnecting or revoking affects both." in status_page(
        alice_client
    )
    assert "Also connected on localhost: reconnecting or revoking affects both." in status_page(
        alice_client, OTHER_HOST
    )

    listing = admin_client.get("/admin/atlassian_oauth/connection/", HTTP_HOST=HOST)
    assert listing.content.decode().count("shared with 1 other site") == 2
    connection = the_connection()
    detail = admin_client.get(
        f"/admin/atlassian_oauth/connection/{connection.pk}/change/", HTTP_HOST=HOST
    ).content.decode()
    assert "127.0.0.1: reconnecting or revoking the grant affects them too" in detail
    grant_page = admin_client.get(
        f"/admin/atlassian_oauth/grant/{connection.grant_id}/change/", HTTP_HOST=HOST
    ).content.decode()
    assert grant_page.count("/admin/atlassian_oauth/connection/") >= 2
    assert "127.0.0.1" in grant_page and ">localhost<" in grant_page


def test_disconnecting_a_shared_grant_says_its_tokens_stay_for_the_other_site(
    alice_client, accepting
):
    connect(alice_client)
    alone = alice_client.get("/atlassian/disconnect/", HTTP_HOST=HOST).content.decode()
    assert "deletes the tokens it keeps" in alone and "Your other sites keep" not in alone
    connect(alice_client, host=OTHER_HOST)
    shared = alice_client.get("/atlassian/disconnect/", HTTP_HOST=HOST).content.decode()
    assert "Your other sites keep this Atlassian connection and its tokens." in shared
    assert "deletes the tokens" not in shared
    alice_client.post("/atlassian/disconnect/", HTTP_HOST=HOST)
    # What the page promised: the other site's connection and the grant's tokens are still there.
    assert Connection.objects.get().site.domain == OTHER_HOST
    assert Grant.objects.get().access_token


def test_three_sites_share_a_grant(alice_client, accepting, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "globex.example"]
    Site.objects.create(domain="globex.example", name="Globex")
    for host in (HOST, OTHER_HOST, "globex.example"):
        connect(alice_client, host=host)
    assert (
        "Also connected on 127.0.0.1 and globex.example: reconnecting or revoking affects all "
        "of them." in status_page(alice_client)
    )


def test_default_site_judgement_without_queries_when_chosen(alice_client, accepting):
    connect(alice_client)
    connection = the_connection()

    def unread() -> list[Resource]:
        raise AssertionError("the listed sites are not needed for a chosen one")

    judged = resources.default_site(connection, "jira", unread)
    assert judged.state == SiteState.CHOSEN and judged.resource == listed()["acme"]


@pytest.fixture
def german(settings):
    """The LocaleMiddleware (as test_i18n's fixture adds it) and a browser asking for German."""
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware
    yield {"HTTP_HOST": HOST, "HTTP_ACCEPT_LANGUAGE": "de"}
    translation.deactivate()


def test_the_choice_and_the_shared_notice_in_german(alice_client, accepting, german):
    ada_reaches(accepting, ACME, INITECH)
    connect(alice_client)
    connect(alice_client, host=OTHER_HOST)
    page = alice_client.get("/atlassian/", **german).content.decode()
    assert (
        "Auch verbunden auf 127.0.0.1: erneutes Verbinden oder Widerrufen betrifft beide." in page
    )
    assert "Dieses Konto erreicht mehrere Jira-Websites." in page
    assert "Hier verwendete Jira-Website" in page and "Diese Jira-Website verwenden" in page
    response = alice_client.post(
        "/atlassian/site/", {"product": "jira", "resource": listed()["initech"].pk}, **german
    )
    assert messages_of(response)[-1] == "Diese Website arbeitet jetzt mit der Jira-Website initech."
    page = alice_client.get("/atlassian/", **german).content.decode()
    assert "hier verwendet" in page
    for english in ("Also connected", "Use this", "several", "used here"):
        assert english not in page
