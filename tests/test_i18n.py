"""The German translation: complete, compiled as committed, and what a German browser sees.

No gettext tools needed: the .po is read here, the .mo through Python's own ``gettext``.
"""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.utils import timezone, translation

import atlassian_oauth
from atlassian_oauth.health import grant_health
from atlassian_oauth.models import Grant
from tests.flow_helpers import callback_params, connect, consent, messages_of, start
from tests.page_helpers import app_frame  # noqa: F401  # a fixture

LC_MESSAGES = Path(atlassian_oauth.__file__).parent / "locale" / "de" / "LC_MESSAGES"
HOST = "localhost"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w+\}")


def read_po(path: Path) -> list[dict[str, object]]:
    """The entries of a .po file: flags, msgctxt, msgid, msgid_plural, msgstr / msgstr[n]."""
    entries: list[dict[str, object]] = []
    entry: dict[str, object] = {}
    key = ""
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if "msgid" in entry:
                entries.append(entry)
            entry, key = {}, ""
        elif line.startswith("#,"):
            entry["flags"] = {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[key] = str(entry[key]) + ast.literal_eval(line)
        else:
            key, _, value = line.partition(" ")
            entry[key] = ast.literal_eval(value)
    return entries


def catalogue() -> list[dict[str, object]]:
    entries = read_po(LC_MESSAGES / "django.po")
    assert entries[0]["msgid"] == ""  # the header
    return entries[1:]


def test_every_string_is_translated():
    entries = catalogue()
    assert len(entries) > 200
    for entry in entries:
        flags = entry.get("flags", set())
        assert isinstance(flags, set) and "fuzzy" not in flags, entry
        translations = [v for k, v in entry.items() if str(k).startswith("msgstr")]
        assert translations and all(translations), entry


def test_translations_keep_every_placeholder():
    for entry in catalogue():
        wanted = sorted(PLACEHOLDER.findall(str(entry["msgid"])))
        for key, value in entry.items():
            if str(key).startswith("msgstr"):
                assert sorted(PLACEHOLDER.findall(str(value))) == wanted, entry


def test_the_committed_mo_is_the_po_compiled():
    with (LC_MESSAGES / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    entries = catalogue()
    for entry in entries:
        msgid = str(entry["msgid"])
        if "msgctxt" in entry:
            assert compiled.pgettext(str(entry["msgctxt"]), msgid) == entry["msgstr"], entry
        elif "msgid_plural" in entry:
            plural = str(entry["msgid_plural"])
            assert compiled.ngettext(msgid, plural, 1) == entry["msgstr[0]"], entry
            assert compiled.ngettext(msgid, plural, 2) == entry["msgstr[1]"], entry
        else:
            assert compiled.gettext(msgid) == entry["msgstr"], entry
    # Nothing in the .mo that the .po lacks (the header aside).
    assert len(compiled._catalog) - 1 == sum(  # type: ignore[attr-defined]
        2 if "msgid_plural" in entry else 1 for entry in entries
    )


#: What makemessages reads as translatable: these functions in Python, the i18n tags in templates.
PYTHON_MARKERS = {"_", "gettext", "gettext_lazy", "ngettext", "ngettext_lazy", "pgettext"}
TEMPLATIZED = re.compile(
    r"\b(n?p?gettext)\(((?:\s*u?(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*,?)+)"
)
LITERAL = re.compile(r"u?('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def marked_in_the_sources() -> set[tuple[object, object]]:
    """(context, msgid) of every string marked for translation in the app (its test kit
    aside, as makemessages is told), found without gettext's tools."""
    from django.utils.translation.template import templatize

    app = LC_MESSAGES.parents[2]
    found: set[tuple[object, object]] = set()
    for path in app.rglob("*.py"):
        if "testing" in path.relative_to(app).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in PYTHON_MARKERS or not node.args:
                continue
            strings = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if node.func.id == "pgettext":
                found.add((strings[0], strings[1]))
            else:
                found.add((None, strings[0]))
    for path in (app / "templates").rglob("*.html"):
        for name, arguments in TEMPLATIZED.findall(templatize(path.read_text(encoding="utf-8"))):
            strings = [ast.literal_eval(literal) for literal in LITERAL.findall(arguments)]
            found.add((strings[0], strings[1]) if "p" in name else (None, strings[0]))
    return found


def test_the_catalogue_holds_exactly_the_strings_the_sources_mark():
    """A string added or changed without updating the catalogue fails here. To update it:
    ``cd atlassian_oauth && django-admin makemessages -l de --add-location file --ignore
    'testing/*'``, translate the new entries, ``django-admin compilemessages -l de``."""
    in_catalogue = {(entry.get("msgctxt"), entry["msgid"]) for entry in catalogue()}
    in_sources = marked_in_the_sources()
    assert len(in_sources) > 200
    assert sorted(in_sources - in_catalogue, key=str) == []
    assert sorted(in_catalogue - in_sources, key=str) == []


# ---- a German browser -------------------------------------------------------------------------


@pytest.fixture
def german(settings):
    """The LocaleMiddleware (the demo has none) and a browser that asks for German."""
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "django.middleware.locale.LocaleMiddleware",
    )
    settings.MIDDLEWARE = middleware
    yield {"HTTP_HOST": HOST, "HTTP_ACCEPT_LANGUAGE": "de"}
    # The middleware activates German for this thread and nothing switches it back: the next
    # test's requests (without the middleware) would be German too.
    translation.deactivate()


@pytest.mark.django_db
@pytest.mark.usefixtures("app_frame")
def test_the_status_page_and_messages_in_german(alice_client, accepting, german):
    params = callback_params(consent(start(alice_client)))
    response = alice_client.get("/atlassian/callback/", params, **german)
    assert messages_of(response) == ["Jira ist als ada@example.com verbunden."]
    html = alice_client.get("/atlassian/", **german).content.decode()
    assert '<html lang="de">' in html
    assert "<title>Jira-Verbindung</title>" in html
    assert "Erledigt:</strong> Jira ist als ada@example.com verbunden." in html
    assert "Verbunden als <strong>ada@example.com</strong>." in html
    assert "<strong>Gesund</strong>: Die Tokens werden automatisch erneuert." in html
    assert "Das Zugriffstoken ist bis <time" in html
    assert " UTC</time> gültig (noch " in html
    assert "das ist ein paar Sekunden her; noch nicht erneuert." in html
    assert "<h3>Atlassian-Websites</h3>" in html
    assert ">Trennen</a>" in html
    assert ">verbundenen Apps</a>" in html
    for english in ("Connected as", "Healthy", "valid until", "Disconnect", "Scopes"):
        assert english not in html


@pytest.mark.django_db
def test_the_button_in_german(alice_client, accepting, german):
    assert ">Jira verbinden</button>" in alice_client.get("/", **german).content.decode()
    connect(alice_client)
    assert ">Jira verbunden</a>" in alice_client.get("/", **german).content.decode()
    Grant.objects.update(status=Grant.Status.NEEDS_RECONNECT, state_changed_at=timezone.now())
    home = alice_client.get("/", **german).content.decode()
    assert ">Jira erneut verbinden</button>" in home
    html = alice_client.get("/atlassian/", **german).content.decode()
    assert "<strong>Neu verbinden nötig</strong>" in html
    assert "Klicken Sie auf „Jira erneut verbinden“." in html
    assert "Atlassian akzeptiert diese Verbindung seit " in html


@pytest.mark.django_db
@pytest.mark.usefixtures("app_frame")
def test_confirmation_and_failures_in_german(alice_client, accepting, german):
    connect(alice_client)
    html = alice_client.get("/atlassian/disconnect/", **german).content.decode()
    assert "<h2>Jira trennen?</h2>" in html
    assert ">Jira trennen</button>" in html
    assert ">Abbrechen</a>" in html
    alice_client.post("/atlassian/disconnect/", **german)
    html = alice_client.get("/atlassian/", **german).content.decode()
    assert "Erledigt:</strong> Jira ist getrennt." in html
    params = callback_params(consent(start(alice_client)))
    params["state"] = "x" * 43
    alice_client.get("/atlassian/callback/", params, **german)
    html = alice_client.get("/atlassian/", **german).content.decode()
    assert (
        "Fehler:</strong> Dieser Verbindungsversuch ist abgelaufen oder wurde in einem anderen "
        "Browser gestartet. Verbinden Sie sich erneut." in html
    )


@pytest.mark.django_db
def test_health_labels_and_advice_in_german(fake_atlassian, alice, sites):
    from tests.refresh_helpers import connected_grant

    grant = connected_grant(fake_atlassian)
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.NO_REFRESH_TOKEN)
    grant.refresh_from_db()
    with translation.override("de"):
        health = grant_health(grant)
        assert str(health.label) == "Kein Aktualisierungstoken"
        assert str(health.advice).startswith("Atlassian hat kein Aktualisierungstoken gesendet")
