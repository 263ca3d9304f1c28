"""One Atlassian app for every tenant domain: the connect host hands each callback back home.

Real HTTP against the fake Atlassian, which knows only the one registered callback URL (the
connect host's), so an authorize request or a code exchange with any other ``redirect_uri``
fails there. Our side runs in Django's test client, one ``Client`` per browser. The test client
keeps one cookie jar for every host, so the connect host is always visited with a browser of
its own, without cookies, as a real browser arrives there (its cookies belong to the tenant's
host). ``DEBUG`` is off, as in production: every request is HTTPS (``secure=True``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.contrib.sites.models import Site
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from atlassian_oauth.models import AtlassianApp, AuthorizationState, Connection, Event, Grant
from atlassian_oauth.testing import (
    ADA_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    GRACE_ACCOUNT_ID,
    FakeAtlassian,
)

pytestmark = pytest.mark.django_db

CONNECT_HOST = "connect.example.com"
CALLBACK_PATH = "/atlassian/callback/"
CONNECT_URL = f"https://{CONNECT_HOST}{CALLBACK_PATH}"
#: Two tenants on subdomains of one parent, and a customer's own, unrelated domain.
ACME, GLOBEX, INITECH = "acme.example.com", "globex.example.com", "jira.initech.test"
ATTACKER_HOST = "evil.example"


@pytest.fixture
def tenants(
    db: None, settings: Any, oauth_settings: Any, accepting: FakeAtlassian
) -> Iterator[dict[str, Site]]:
    """The tenant sites, sharing the default app through the connect host; the fake knows
    that app with the connect host's callback URL only."""
    settings.ALLOWED_HOSTS = [CONNECT_HOST, ACME, GLOBEX, INITECH, ATTACKER_HOST]
    oauth_settings(CONNECT_HOST_CALLBACK_URL=CONNECT_URL)
    accepting.register_app(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, [CONNECT_URL])
    Site.objects.clear_cache()
    found = {host: Site.objects.create(domain=host, name=host) for host in (ACME, GLOBEX, INITECH)}
    yield found
    Site.objects.clear_cache()


def browser(user: User | None = None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def get(client: Client, url: str) -> Any:
    """GET an absolute URL as a browser would: its host, its scheme."""
    parts = urlsplit(url)
    return client.get(
        parts.path,
        {key: values[0] for key, values in parse_qs(parts.query).items()},
        HTTP_HOST=parts.netloc,
        secure=parts.scheme == "https",
    )


def start(client: Client, host: str) -> str:
    """Click Connect on ``host``; return the consent URL."""
    response = client.post("/atlassian/connect/", HTTP_HOST=host, secure=True)
    assert response.status_code == 302, response
    return str(response["Location"])


def consent(authorize_url: str) -> str:
    """The fake consents at once; return where it sends the browser (the callback URL)."""
    response = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return str(response.headers["Location"])


def callback_state(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def pending(state: str) -> AuthorizationState | None:
    digest = hashlib.sha256(state.encode()).hexdigest()
    return AuthorizationState.objects.filter(state_hash=digest).first()


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# ---- the round trip -----------------------------------------------------------------------------


def test_each_tenant_connects_through_the_one_connect_host(tenants, accepting, django_user_model):
    for number, host in enumerate((ACME, GLOBEX, INITECH)):
        user = django_user_model.objects.create_user(username=f"user{number}")
        home = browser(user)
        authorize = urlsplit(start(home, host))
        assert parse_qs(authorize.query)["redirect_uri"] == [CONNECT_URL]

        at_connect_host = consent(authorize.geturl())
        assert at_connect_host.startswith(CONNECT_URL + "?")
        bounced = get(browser(), at_connect_host)
        assert bounced.status_code == 302
        assert bounced["Referrer-Policy"] == "no-referrer"
        back = urlsplit(bounced["Location"])
        assert (back.scheme, back.netloc, back.path) == ("https", host, CALLBACK_PATH)
        assert back.query == urlsplit(at_connect_host).query  # the same code and state
        # The connect host only passed it on: the flow is still pending, no code was spent.
        assert pending(callback_state(at_connect_host)) is not None
        assert accepting.counts["code_exchange"] == number

        finished = get(home, bounced["Location"])
        assert finished.status_code == 302
        assert messages_of(finished) == ["Jira is connected as ada@example.com."]
        assert Connection.objects.filter(user=user, site=tenants[host]).exists()
        assert pending(callback_state(at_connect_host)) is None  # used once, by its tenant
        assert accepting.counts["code_exchange"] == number + 1
    # One Atlassian account on three tenants of one app: one grant, as ever.
    assert Grant.objects.get().account_id == ADA_ACCOUNT_ID
    assert Connection.objects.count() == 3


def test_two_tenants_with_flows_pending_at_once_each_get_their_own_back(
    tenants, accepting, alice, bob
):
    acme, globex = browser(alice), browser(bob)
    acme_callback = consent(start(acme, ACME))
    accepting.consent_account_id = GRACE_ACCOUNT_ID
    globex_callback = consent(start(globex, GLOBEX))

    connect_host = browser()
    to_globex = get(connect_host, globex_callback)["Location"]
    to_acme = get(connect_host, acme_callback)["Location"]
    assert urlsplit(to_acme).netloc == ACME and urlsplit(to_globex).netloc == GLOBEX
    get(globex, to_globex)
    get(acme, to_acme)
    assert Connection.objects.get(user=alice).site == tenants[ACME]
    assert Connection.objects.get(user=alice).grant.account_id == ADA_ACCOUNT_ID
    assert Connection.objects.get(user=bob).site == tenants[GLOBEX]
    assert Connection.objects.get(user=bob).grant.account_id == GRACE_ACCOUNT_ID


def test_the_code_exchange_sends_the_registered_callback_url(tenants, accepting, alice):
    """Had the exchange sent the tenant's own URL, the fake (like Atlassian) refuses the code."""
    home = browser(alice)
    at_connect_host = consent(start(home, ACME))
    back = get(browser(), at_connect_host)["Location"]
    flow = pending(callback_state(at_connect_host))
    assert flow is not None and flow.redirect_uri == CONNECT_URL
    AuthorizationState.objects.filter(pk=flow.pk).update(
        redirect_uri=f"https://{ACME}{CALLBACK_PATH}"
    )

    finished = get(home, back)
    assert messages_of(finished) == [
        "This connection attempt took too long or was already used. Connect again."
    ]
    assert not Connection.objects.exists()


def test_a_site_with_its_own_app_keeps_its_own_callback(tenants, accepting, alice):
    AtlassianApp.objects.create(
        site=tenants[GLOBEX], client_id="globex-app", client_secret="globex-secret"
    )
    own_callback = f"https://{GLOBEX}{CALLBACK_PATH}"
    accepting.register_app("globex-app", "globex-secret", [own_callback])
    home = browser(alice)
    authorize = start(home, GLOBEX)
    assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [own_callback]
    callback = consent(authorize)
    assert callback.startswith(own_callback + "?")

    finished = get(home, callback)
    assert messages_of(finished) == ["Jira is connected as ada@example.com."]
    assert Connection.objects.get(user=alice).grant.client_id == "globex-app"
    # Its flow is no flow of the connect host: presented there, it is not handed on.
    other = consent(start(home, GLOBEX)).replace(own_callback, CONNECT_URL)
    refused = get(browser(), other)
    assert refused.status_code == 400 and not refused.has_header("Location")


def test_a_site_app_with_a_callback_url_of_its_own_keeps_it(tenants, accepting, alice):
    url = f"https://{INITECH}/custom/callback/"
    AtlassianApp.objects.create(
        site=tenants[INITECH],
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        callback_url=url,
    )
    authorize = start(browser(alice), INITECH)
    assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [url]


def test_a_connect_host_that_is_a_tenant_too_finishes_its_own_flows_there(
    tenants, accepting, alice
):
    Site.objects.create(domain=CONNECT_HOST, name="Connect")
    home = browser(alice)
    callback = consent(start(home, CONNECT_HOST))
    finished = get(home, callback)  # the same host: no hand-off, the callback runs here
    assert messages_of(finished) == ["Jira is connected as ada@example.com."]
    # And a state it does not know gets that tenant's own answer, not the bare page.
    replay = get(home, callback)
    assert replay.status_code == 302
    assert "expired or was started in another browser" in messages_of(replay)[-1]


# ---- what the connect host refuses ----------------------------------------------------------


def test_a_state_of_tenant_a_on_tenant_bs_host_fails(tenants, accepting, alice):
    # One browser, one session, even: the site check alone refuses it.
    home = browser(alice)
    at_connect_host = consent(start(home, ACME))
    crafted = get(browser(), at_connect_host)["Location"].replace(ACME, GLOBEX)

    refused = get(home, crafted)
    assert refused.status_code == 302
    assert messages_of(refused) == [
        "This connection attempt expired or was started in another browser. Connect again."
    ]
    assert not Connection.objects.exists()
    assert accepting.counts["code_exchange"] == 0
    event = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert (event.site, event.details["reason"]) == (tenants[GLOBEX], "invalid_state")
    # Never consumed on the wrong host: the rightful tenant still finishes it.
    finished = get(home, get(browser(), at_connect_host)["Location"])
    assert messages_of(finished)[-1] == "Jira is connected as ada@example.com."
    assert Connection.objects.get().site == tenants[ACME]


@pytest.mark.parametrize(
    "query",
    [
        {"state": "not-a-state-we-made", "code": "whatever"},
        {"code": "no-state-at-all"},
        {"error": "access_denied"},
        {},
    ],
)
def test_an_unknown_state_gets_a_plain_page(tenants, accepting, query):
    response = browser().get(CALLBACK_PATH, query, HTTP_HOST=CONNECT_HOST, secure=True)
    assert response.status_code == 400
    assert not response.has_header("Location")
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "<title>This connection cannot continue</title>" in page
    assert "not known here: it expired, was already used, or was never started" in page
    assert "whatever" not in page and "no-state-at-all" not in page


def test_a_used_state_is_unknown_to_the_connect_host(tenants, accepting, alice):
    home = browser(alice)
    at_connect_host = consent(start(home, ACME))
    get(home, get(browser(), at_connect_host)["Location"])
    assert Connection.objects.exists()
    assert get(browser(), at_connect_host).status_code == 400


def test_an_attackers_state_in_the_victims_browser_is_refused_at_home(
    tenants, accepting, alice, bob
):
    """The attacker starts a flow with his own Atlassian account and lures the victim to its
    callback URL: the connect host hands it on, her session on the tenant refuses it."""
    attacker = browser(bob)
    accepting.consent_account_id = GRACE_ACCOUNT_ID
    lure = consent(start(attacker, ACME))

    victim = browser(alice)
    # Logged in on Acme, with a flow of her own pending: her session has a binding, not his.
    her_flow = callback_state(start(victim, ACME))
    bounced = get(victim, lure)
    assert urlsplit(bounced["Location"]).netloc == ACME
    landed = get(victim, bounced["Location"])
    assert messages_of(landed) == [
        "This connection attempt expired or was started in another browser. Connect again."
    ]
    assert not Connection.objects.exists()
    assert accepting.counts["code_exchange"] == 0
    failed = Event.objects.get(kind=Event.Kind.CONNECT_FAILED)
    assert (failed.user, failed.details["reason"]) == (alice, "invalid_state")
    # Neither flow is spent: a stranger's state cancels nothing.
    assert pending(callback_state(lure)) is not None and pending(her_flow) is not None


@pytest.mark.parametrize("domain", ["evil.example/acme", "acme.example.com@evil.example", "a b"])
def test_a_site_domain_that_is_no_plain_host_is_never_a_target(tenants, accepting, alice, domain):
    at_connect_host = consent(start(browser(alice), ACME))
    Site.objects.filter(pk=tenants[ACME].pk).update(domain=domain)
    refused = get(browser(), at_connect_host)
    assert refused.status_code == 400 and not refused.has_header("Location")


# ---- HTTPS ------------------------------------------------------------------------------------


def test_without_debug_the_connect_host_hands_on_only_over_https(tenants, accepting, alice):
    at_connect_host = consent(start(browser(alice), ACME))
    plain = at_connect_host.replace("https://", "http://", 1)
    refused = get(browser(), plain)
    assert refused.status_code == 400 and not refused.has_header("Location")
    assert refused["Referrer-Policy"] == "no-referrer"
    assert "only over HTTPS" in refused.content.decode()
    assert pending(callback_state(at_connect_host)) is not None

    handed = get(browser(), at_connect_host)
    assert handed["Location"].startswith(f"https://{ACME}{CALLBACK_PATH}?")


def test_with_debug_the_target_keeps_the_requests_scheme(
    tenants, accepting, alice, settings, oauth_settings
):
    settings.DEBUG = True
    oauth_settings(CONNECT_HOST_CALLBACK_URL=f"http://{CONNECT_HOST}{CALLBACK_PATH}")
    accepting.register_app(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, None)
    at_connect_host = consent(start(browser(alice), ACME))
    assert at_connect_host.startswith(f"http://{CONNECT_HOST}{CALLBACK_PATH}?")
    assert get(browser(), at_connect_host)["Location"].startswith(f"http://{ACME}/")
    over_https = at_connect_host.replace("http://", "https://", 1)
    assert get(browser(), over_https)["Location"].startswith(f"https://{ACME}/")


def test_a_tenant_domain_without_a_port_gets_the_connect_hosts_port(
    tenants, accepting, alice, settings, oauth_settings
):
    """So one server on several loopback names (the demo) works; a port of its own is kept."""
    settings.DEBUG = True
    oauth_settings(CONNECT_HOST_CALLBACK_URL=f"http://{CONNECT_HOST}:8000{CALLBACK_PATH}")
    accepting.register_app(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, None)
    tenants[GLOBEX].domain = f"{GLOBEX}:9000"
    tenants[GLOBEX].save()
    Site.objects.clear_cache()
    home = browser(alice)
    to_acme = get(browser(), consent(start(home, f"{ACME}:8000")))["Location"]
    assert to_acme.startswith(f"http://{ACME}:8000{CALLBACK_PATH}?")
    assert messages_of(get(home, to_acme)) == ["Jira is connected as ada@example.com."]
    to_globex = get(browser(), consent(start(browser(alice), f"{GLOBEX}:9000")))["Location"]
    assert to_globex.startswith(f"http://{GLOBEX}:9000{CALLBACK_PATH}?")


# ---- never an open redirect -------------------------------------------------------------------

HOSTS = st.one_of(
    st.sampled_from(
        [
            CONNECT_HOST,
            f"{CONNECT_HOST}:443",
            CONNECT_HOST.upper(),
            f"{CONNECT_HOST}.",
            f"{CONNECT_HOST}:8443",
            ACME,
            GLOBEX,
            INITECH,
            ATTACKER_HOST,
            f"{ATTACKER_HOST}:443",
        ]
    ),
    st.from_regex(r"[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True),
)


@pytest.fixture
def flows(tenants, accepting, alice, bob, settings) -> dict[str, str]:
    """Pending flows, state -> the domain of their site: alice's on Acme, bob's on Globex, one
    already expired, and one of a site with its own app (not the connect host's)."""
    settings.ALLOWED_HOSTS = ["*"]
    found = {}
    for user, host in ((alice, ACME), (bob, GLOBEX), (alice, INITECH)):
        found[callback_state(consent(start(browser(user), host)))] = host
    AtlassianApp.objects.create(site=tenants[GLOBEX], client_id="globex-app", client_secret="s")
    accepting.register_app("globex-app", "s", None)
    own_app_flow = urlsplit(start(browser(bob), GLOBEX))
    found[parse_qs(own_app_flow.query)["state"][0]] = GLOBEX
    # Expired last, as every start deletes the expired flows.
    AuthorizationState.objects.filter(site=tenants[INITECH]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert AuthorizationState.objects.count() == 4
    return found


@hypothesis_settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    host=HOSTS,
    # A number picks one of the pending flows' states.
    state=st.one_of(st.integers(min_value=0, max_value=3), st.just(""), st.text(max_size=60)),
    secure=st.booleans(),
    debug=st.booleans(),
)
# Each flow at the connect host, as Atlassian sends it, is tried whatever else is drawn.
@example(host=CONNECT_HOST, state=0, secure=True, debug=False)
@example(host=CONNECT_HOST, state=1, secure=True, debug=False)
@example(host=CONNECT_HOST, state=2, secure=True, debug=False)
@example(host=CONNECT_HOST, state=3, secure=True, debug=False)
@example(host=CONNECT_HOST, state=3, secure=False, debug=True)
def test_the_only_other_host_ever_redirected_to_is_the_flows_own_site(
    flows: dict[str, str], settings: Any, host: str, state: int | str, secure: bool, debug: bool
) -> None:
    settings.DEBUG = debug
    if isinstance(state, int):
        state = list(flows)[state]
    before = AuthorizationState.objects.count()
    response = browser().get(
        CALLBACK_PATH, {"state": state, "code": "c"}, HTTP_HOST=host, secure=secure
    )
    location = response.get("Location", "")
    target = urlsplit(location)
    if target.netloc and target.netloc.lower() != host.lower():
        # Handed on: only to the site of the pending flow this very state names, on its path.
        flow = pending(state)
        assert flow is not None, location
        assert flow.redirect_uri == CONNECT_URL
        assert target.netloc == flow.site.domain == flows[state]
        assert target.path == CALLBACK_PATH
        assert target.scheme == ("http" if debug and not secure else "https")
        assert response["Referrer-Policy"] == "no-referrer"
    else:
        assert not target.netloc or target.netloc.lower() == host.lower()
    assert AuthorizationState.objects.count() == before  # nothing is consumed on the way


# ---- the demo's connect host --------------------------------------------------------------------


def test_the_demos_connect_host_answers_only_the_callback(client, settings, oauth_settings):
    from demo_site.connect_host import CONNECT_HOST as DEMO_HOST
    from demo_site.connect_host import connect_host_callback_url

    settings.DEBUG = True  # as the demo runs
    oauth_settings(CONNECT_HOST_CALLBACK_URL=connect_host_callback_url(8000))
    assert DEMO_HOST in settings.ALLOWED_HOSTS
    host = f"{DEMO_HOST}:8000"
    assert not Site.objects.filter(domain__startswith=DEMO_HOST).exists()
    # Django's own site middleware would fail every request here (no Site); the demo's does not.
    assert client.get("/", HTTP_HOST=host).status_code == 404
    assert client.get("/admin/", HTTP_HOST=host).status_code == 404
    stale = client.get(CALLBACK_PATH, {"state": "old"}, HTTP_HOST=host)
    assert stale.status_code == 400
    assert "This connection cannot continue" in stale.content.decode()
