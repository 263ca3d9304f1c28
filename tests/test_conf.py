from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured

from atlassian_oauth.conf import DEFAULT_SCOPES, conf
from tests.flow_helpers import start


def test_defaults_apply_when_the_setting_is_absent(settings):
    del settings.ATLASSIAN_OAUTH
    assert conf.CLIENT_ID == ""
    assert conf.SCOPES == DEFAULT_SCOPES
    assert "offline_access" in conf.SCOPES
    assert conf.AUTH_BASE_URL == "https://auth.atlassian.com"
    assert conf.API_BASE_URL == "https://api.atlassian.com"
    assert conf.HTTP_TIMEOUT == 10.0
    assert conf.ENCRYPTION_KEYS == ()


def test_settings_are_read_live(settings):
    settings.ATLASSIAN_OAUTH = {"CLIENT_ID": "one"}
    assert conf.CLIENT_ID == "one"
    settings.ATLASSIAN_OAUTH = {"CLIENT_ID": "two"}
    assert conf.CLIENT_ID == "two"


def test_scopes_accept_a_space_separated_string(settings):
    settings.ATLASSIAN_OAUTH = {"SCOPES": "read:me  offline_access"}
    assert conf.SCOPES == ("read:me", "offline_access")


def test_base_urls_lose_their_trailing_slash(settings):
    settings.ATLASSIAN_OAUTH = {"AUTH_BASE_URL": "http://127.0.0.1:9/"}
    assert conf.AUTH_BASE_URL == "http://127.0.0.1:9"


def test_the_callback_url_is_kept_exactly_as_registered(settings):
    # Atlassian compares redirect_uri with the console's callback character for character.
    settings.ATLASSIAN_OAUTH = {"CALLBACK_URL": "https://acme.example/atlassian/callback/"}
    assert conf.CALLBACK_URL == "https://acme.example/atlassian/callback/"


@pytest.mark.django_db
@pytest.mark.usefixtures("sites")
def test_the_consent_request_sends_the_callback_url_as_written(
    fake_atlassian, oauth_settings, alice_client
):
    oauth_settings(CALLBACK_URL="http://localhost/atlassian/callback/")
    sent = parse_qs(urlsplit(start(alice_client)).query)["redirect_uri"]
    assert sent == ["http://localhost/atlassian/callback/"]


@pytest.mark.parametrize(
    ("options", "attribute", "named"),
    [
        ({"CLIENT_ID": 42}, "CLIENT_ID", "CLIENT_ID"),
        ({"SCOPES": ["read:me", 3]}, "SCOPES", "SCOPES"),
        ({"AUTH_BASE_URL": "auth.atlassian.com"}, "AUTH_BASE_URL", "AUTH_BASE_URL"),
        ({"HTTP_TIMEOUT": 0}, "HTTP_TIMEOUT", "HTTP_TIMEOUT"),
        ({"HTTP_TIMEOUT": True}, "HTTP_TIMEOUT", "HTTP_TIMEOUT"),
        ({"ENCRYPTION_KEYS": [b"bytes"]}, "ENCRYPTION_KEYS", "ENCRYPTION_KEYS"),
    ],
)
def test_a_wrong_value_names_the_setting(settings, options, attribute, named):
    settings.ATLASSIAN_OAUTH = options
    with pytest.raises(ImproperlyConfigured, match=named):
        getattr(conf, attribute)


def test_a_setting_that_is_not_a_dict_is_refused(settings):
    settings.ATLASSIAN_OAUTH = ["CLIENT_ID"]
    with pytest.raises(ImproperlyConfigured, match="ATLASSIAN_OAUTH must be a dict"):
        conf.CLIENT_ID  # noqa: B018
