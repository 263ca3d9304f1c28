"""The guides in docs/ cannot drift from the code.

What the guides quote, they quote in a form this module reads:

- a fenced block marked ``text`` holds what a person sees, one message per line: a system
  check as ``manage.py check`` prints it (``?: (atlassian_oauth.E001) message`` and an indented
  ``HINT: ...`` line), or a message of the app (a page, admin, the log, a command's output)
  with example values where the code has placeholders;
- a fenced block marked ``pytb`` holds an exception line of Django's own;
- ``sh`` blocks and inline code hold the commands (``python manage.py ...``).

Every check id the guides name exists, and each quoted check is what the check really returns
for the settings the guide describes; every quoted message is a string of the package (its
Python literals and its translation catalogue) with holes for the placeholders, or a few of
such strings joined at ": " / ". " (a label and its text); every relative link resolves, to a
heading too; every command parses with the real command's parser.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.sites.models import Site
from django.core.checks import CheckMessage
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError
from django.test import RequestFactory

from atlassian_oauth import checks
from atlassian_oauth.crypto import generate_key
from atlassian_oauth.models import AtlassianApp
from tests.helpers import REPO

PACKAGE = REPO / "atlassian_oauth"
CATALOGUE = PACKAGE / "locale" / "de" / "LC_MESSAGES" / "django.po"
GUIDES = [REPO / "docs" / name for name in ("atlassian-setup.md", "troubleshooting.md")]
#: Guides that quote no messages, but whose links, check ids and commands count too.
LINKED = [*GUIDES, REPO / "docs" / "multi-tenant.md"]

HOLE = "\x00"
PLACEHOLDER = re.compile(
    r"\{\{.*?\}\}"  # a template variable
    r"|%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdrfi]"  # %(name)s
    r"|%[-#0 +]*\d*(?:\.\d+)?[sdrfi]"  # %s, %.0f
    r"|\{[^{}]*\}"  # {name}, {}, {x!r}
)
MARKUP = re.compile(r"</?[a-zA-Z][^<>]*>")
#: Where a quoted line may join two strings: a label and its text, or two sentences.
JOINS = re.compile(r"(?<=\.) (?=\S)|: (?=\S)")
CHECK_LINE = re.compile(r"^(?P<obj>.+?): \((?P<id>atlassian_oauth\.[EW]\d{3})\) (?P<msg>.+)$")
HINT_LINE = re.compile(r"^\s+HINT: (?P<hint>.+)$")
CHECK_ID = re.compile(r"atlassian_oauth\.[EW]\d{3}|(?<=`)[EW]\d{3}(?=`)")
LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
INLINE_CODE = re.compile(r"`([^`]+)`")
MANAGE = re.compile(r"(?:^|\s)(?:python |\./)?manage\.py (.+)$")
#: A fixed string shorter than this matches only when a part equals it whole.
MIN_LITERAL = 16


def normalise(text: str) -> str:
    return " ".join(text.split())


# ---- the guides ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    guide: Path
    line: int
    lang: str
    lines: tuple[str, ...]


def blocks(guide: Path) -> list[Block]:
    """The fenced blocks of a guide, their content without the fence's indentation."""
    found: list[Block] = []
    current: list[str] | None = None
    indent, start, lang = 0, 0, ""
    for number, line in enumerate(guide.read_text().splitlines(), 1):
        stripped = line.lstrip()
        if current is None and stripped.startswith("```"):
            current, indent, start = [], len(line) - len(stripped), number
            lang = stripped[3:].strip()
        elif current is not None and stripped.startswith("```"):
            found.append(Block(guide, start, lang, tuple(current)))
            current = None
        elif current is not None:
            current.append(line[indent:] if not line[:indent].strip() else line.lstrip())
    assert current is None, f"{guide.name}:{start}: a fenced block is not closed"
    return found


def prose(guide: Path) -> str:
    """The guide without its fenced blocks, lines joined (inline code may wrap)."""
    lines, inside = [], False
    for line in guide.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            lines.append(line)
    return " ".join(lines)


@dataclass(frozen=True)
class QuotedCheck:
    where: str
    obj: str
    id: str
    msg: str
    hint: str | None


def quoted(guides: Iterable[Path] = GUIDES) -> tuple[list[QuotedCheck], list[tuple[str, str]]]:
    """The checks and the messages (where, text) the ``text`` blocks quote."""
    found_checks: list[QuotedCheck] = []
    messages: list[tuple[str, str]] = []
    for guide in guides:
        for block in blocks(guide):
            if block.lang != "text":
                continue
            for offset, line in enumerate(block.lines, 1):
                where = f"{guide.name}:{block.line + offset}"
                if not line.strip():
                    continue
                hint = HINT_LINE.match(line)
                if hint:
                    assert found_checks and found_checks[-1].hint is None, where
                    found_checks[-1] = QuotedCheck(
                        **{**found_checks[-1].__dict__, "hint": normalise(hint["hint"])}
                    )
                    continue
                check = CHECK_LINE.match(line)
                if check:
                    found_checks.append(
                        QuotedCheck(where, check["obj"], check["id"], normalise(check["msg"]), None)
                    )
                else:
                    messages.append((where, normalise(line)))
    return found_checks, messages


# ---- the code's strings --------------------------------------------------------------------


def _template(text: str) -> str:
    """A string of the code as a person reads it: markup gone, placeholders as holes."""
    return normalise(PLACEHOLDER.sub(HOLE, MARKUP.sub("", text)).replace("%%", "%"))


MAX_ALTERNATIVES = 16


def _alternatives(node: ast.AST) -> list[str]:
    """Every text ``node`` can evaluate to, with a hole for each value computed at run time
    (both branches of a conditional, each part of a concatenation)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = [
            value.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str)
            else "{}"
            for value in node.values
        ]
        return ["".join(parts)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        joined = itertools.product(_alternatives(node.left), _alternatives(node.right))
        return ["".join(pair) for pair in itertools.islice(joined, MAX_ALTERNATIVES)]
    if isinstance(node, ast.IfExp):
        return (_alternatives(node.body) + _alternatives(node.orelse))[:MAX_ALTERNATIVES]
    return ["{}"]


def python_strings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant | ast.JoinedStr | ast.BinOp | ast.IfExp):
            texts = _alternatives(node)
            if any(text != "{}" for text in texts):
                found += texts
    return found


def catalogue_strings(path: Path = CATALOGUE) -> list[str]:
    """The msgids (singular and plural) of a gettext catalogue."""
    found, current = [], None
    for line in path.read_text().splitlines():
        if line.startswith(("msgid ", "msgid_plural ")):
            if current is not None:
                found.append(current)
            current = ast.literal_eval(line.split(" ", 1)[1])
        elif line.startswith('"') and current is not None:
            current += ast.literal_eval(line)
        elif current is not None:
            found.append(current)
            current = None
    return [text for text in found if text]


def package_sources() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "testing" not in path.parts and "migrations" not in path.parts
    ]


@functools.cache
def package_strings() -> tuple[str, ...]:
    raw = [text for path in package_sources() for text in python_strings(path)]
    return tuple(raw + catalogue_strings())


class Corpus:
    """The code's strings, and whether a quoted message is one of them (or a few joined)."""

    def __init__(self, raw: Iterable[str]) -> None:
        templates = {_template(text) for text in raw} - {"", HOLE}
        self.whole = {text for text in templates if HOLE not in text}
        self.patterns: list[tuple[str, str, int]] = []  # (template, longest fixed run, fixed chars)
        for text in templates:
            fixed = text.split(HOLE)
            self.patterns.append((text, max(fixed, key=len), sum(map(len, fixed))))

    @staticmethod
    @functools.cache
    def _regex(template: str) -> re.Pattern[str]:
        return re.compile("(?s)" + "(.*?)".join(re.escape(part) for part in template.split(HOLE)))

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (one corpus per test run, or a mutant)
    def part(self, text: str) -> str | None:
        """The code string ``text`` is (an instance of), or None."""
        if text in self.whole:
            return text
        for template, run, fixed in self.patterns:
            if (
                fixed >= min(MIN_LITERAL, len(text))
                and len(run) >= 4
                and run in text
                and self._regex(template).fullmatch(text)
            ):
                return template
        return None

    def match(self, text: str) -> list[str] | None:
        """The code strings ``text`` is made of, joined at ": " or ". "; None: not found."""
        joins = [m.start() for m in JOINS.finditer(text)]
        for count in range(3):
            for chosen in itertools.combinations(joins, count):
                parts, start = [], 0
                for position in chosen:
                    parts.append(text[start:position])
                    start = position + (2 if text[position] == ":" else 1)
                parts.append(text[start:])
                found = [self._part_or_sentence(part) for part in parts[:-1]]
                found.append(self.part(parts[-1]))
                if all(found):
                    return [part for part in found if part]
        return None

    def _part_or_sentence(self, text: str) -> str | None:
        """A part before a join: with its full stop, or without (the code joining two strings
        with ". " adds the stop itself)."""
        return self.part(text) or (self.part(text[:-1]) if text.endswith(".") else None)


@functools.cache
def corpus() -> Corpus:
    return Corpus(package_strings())


# ---- what the guides quote is in the code --------------------------------------------------


def test_the_guides_quote_messages_and_checks():
    found_checks, messages = quoted()
    assert len(found_checks) >= 10
    assert len(messages) >= 40


def test_every_quoted_message_is_a_string_of_the_code():
    _, messages = quoted()
    missing = [
        f"{where}: {text}"
        for where, text in messages
        # manage.py prints a CommandError as "CommandError: <the app's message>".
        if corpus().match(text.removeprefix("CommandError: ")) is None
    ]
    assert missing == [], "\n".join(missing)


def _fixed_words(template: str) -> set[str]:
    return set(re.findall(r"\b[A-Za-z]{4,}\b", template.replace(HOLE, " ")))


def test_changing_a_word_of_a_quoted_string_in_the_code_breaks_the_quote():
    """The matching is strict enough to notice: for every quoted message, a copy of the code's
    strings with one of its words changed (everywhere) no longer contains it."""
    _, messages = quoted()
    lenient = []
    for where, quote in messages:
        text = quote.removeprefix("CommandError: ")
        parts = corpus().match(text)
        assert parts is not None, where
        words = set().union(*map(_fixed_words, parts)) & set(re.findall(r"\b[A-Za-z]+\b", text))
        word = max(sorted(words), key=len)
        pattern = re.compile(rf"\b{word}\b")
        mutant = Corpus(pattern.sub(word + "zz", raw) for raw in package_strings())
        if mutant.match(text) is not None:
            lenient.append(f"{where}: still found with {word!r} changed: {text}")
    assert lenient == [], "\n".join(lenient)


def test_the_matching_refuses_what_the_code_does_not_say():
    sample = Corpus(
        [
            "Refresh of grant %s (%s) [%s] failed: %s, needs reconnect. %s",
            "Health",
            "Needs reconnect",
            "Tokens are renewed automatically.",
            "%s: %s",
        ]
    )
    line = (
        "Refresh of grant 7 (ada@example.com) [beat] failed: x, needs reconnect. Atlassian said no"
    )
    assert sample.match(line)
    assert sample.match("Health: Needs reconnect. Tokens are renewed automatically.")
    assert sample.match(line.replace("needs reconnect", "must reconnect")) is None
    assert sample.match("Health: Tokens are renewed by hand.") is None
    assert sample.match("Anything: at all") is None  # "%s: %s" is too little fixed text


def test_every_check_id_the_guides_name_exists():
    known = {
        node.value.value
        for node in ast.walk(ast.parse((PACKAGE / "checks.py").read_text()))
        if isinstance(node, ast.keyword)
        and node.arg == "id"
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    assert len(known) >= 18
    named = {
        (guide.name, match if "." in match else f"atlassian_oauth.{match}")
        for guide in LINKED
        for match in CHECK_ID.findall(guide.read_text())
    }
    assert len(named) >= 15
    assert sorted(f"{guide}: {id_}" for guide, id_ in named if id_ not in known) == []


# ---- each quoted check is what the check returns ---------------------------------------------

VALID = {"CLIENT_ID": "id", "CLIENT_SECRET": "secret"}
#: For each check id the guides quote: the settings (and site app) under which the guide's
#: example is produced. ATLASSIAN_OAUTH entries update a valid configuration.
SCENARIOS: dict[str, dict[str, object]] = {
    "atlassian_oauth.E001": {"SCOPES": "read:jira-work read:me"},
    "atlassian_oauth.E005": {"SCOPES": "read:jira-work offline_access"},
    "atlassian_oauth.E003": {"CLIENT_SECRET": ""},
    "atlassian_oauth.W001": {"CLIENT_ID": "", "CLIENT_SECRET": ""},
    "atlassian_oauth.E002": {"ENCRYPTION_KEYS": []},
    "atlassian_oauth.W002": {"CALLBACK_URL": "http://app.example.com/atlassian/callback/"},
    "atlassian_oauth.E008": {
        "CONNECT_HOST_CALLBACK_URL": "https://connect.example.com/atlassian/callback"
    },
    "atlassian_oauth.E009": {
        "CALLBACK_URL": "https://app.example.com/atlassian/callback/",
        "CONNECT_HOST_CALLBACK_URL": "https://connect.example.com/atlassian/callback/",
    },
    "atlassian_oauth.W009": {
        "CONNECT_HOST_CALLBACK_URL": "https://connect.example.com/atlassian/callback/",
        "allowed_hosts": ["app.example.com"],
    },
    "atlassian_oauth.W004": {"beat_schedule": {}},
    "atlassian_oauth.W010": {"allowed_hosts": ["app.example.com"]},
    "atlassian_oauth.W011": {"allowed_hosts": ["app.example.com"], "sites": ["example.com"]},
    "atlassian_oauth.W012": {"site_id": 9999, "sites": ["example.com"]},
    "atlassian_oauth.W003": {
        "site_app": {
            "domain": "acme.example.com",
            "client_id": "acme-client-id",
            "scopes": "read:jira-work read:me",
        }
    },
}


def _run_checks(settings, scenario: dict[str, object]) -> list[CheckMessage]:
    scenario = dict(scenario)
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = scenario.pop("allowed_hosts", [".example.com"])
    settings.SECURE_PROXY_SSL_HEADER = scenario.pop("proxy_header", None)
    if "site_id" in scenario:
        settings.SITE_ID = scenario.pop("site_id")
    elif hasattr(settings, "SITE_ID"):
        del settings.SITE_ID
    if "sites" in scenario:
        Site.objects.all().delete()
        for domain in scenario.pop("sites"):  # type: ignore[attr-defined]
            Site.objects.create(domain=domain, name=domain)
    if "beat_schedule" in scenario:
        settings.CELERY_BEAT_SCHEDULE = scenario.pop("beat_schedule")
    site_app = scenario.pop("site_app", None)
    settings.ATLASSIAN_OAUTH = {**VALID, "ENCRYPTION_KEYS": [generate_key()], **scenario}
    if isinstance(site_app, dict):
        site = Site.objects.create(domain=site_app["domain"], name=site_app["domain"])
        AtlassianApp.objects.create(
            site=site,
            client_id=site_app["client_id"],
            client_secret="secret",
            scopes=site_app["scopes"],
        )
    # Every check of the module, as `manage.py check --database default` runs them.
    functions = [f for name, f in vars(checks).items() if name.startswith("check_")]
    assert len(functions) >= 7
    return [message for check in functions for message in check(databases=["default"])]


def _quoted_check_cases() -> list[QuotedCheck]:
    return quoted()[0]


@pytest.mark.django_db
@pytest.mark.parametrize("quote", _quoted_check_cases(), ids=lambda quote: quote.where)
def test_each_quoted_check_is_what_the_check_returns(settings, quote):
    assert quote.id in SCENARIOS, f"{quote.where}: add a scenario producing {quote.id}"
    produced = [m for m in _run_checks(settings, SCENARIOS[quote.id]) if m.id == quote.id]
    assert produced, f"{quote.where}: the scenario does not produce {quote.id}"
    shown = [
        (str(m.obj) if m.obj is not None else "?", normalise(m.msg), normalise(m.hint or ""))
        for m in produced
    ]
    assert (quote.obj, quote.msg, quote.hint or "") in shown, quote.where


# ---- Django's own words ----------------------------------------------------------------------


def _django_says() -> dict[str, Callable[[], str]]:
    def missing_site() -> str:
        request = RequestFactory().get("/", HTTP_HOST="app.example.com")
        try:
            Site.objects.get_current(request)
        except Site.DoesNotExist as error:
            kind = type(error)
            return f"{kind.__module__}.{kind.__qualname__}: {error}"
        raise AssertionError("a Site was found")

    return {"missing_site": missing_site}


@pytest.mark.django_db
def test_each_quoted_exception_of_djangos_is_what_django_raises(settings):
    del settings.SITE_ID
    settings.ALLOWED_HOSTS = ["app.example.com"]
    Site.objects.all().delete()
    Site.objects.create(domain="example.com", name="example.com")
    said = {produce() for produce in _django_says().values()}
    lines = [
        (f"{block.guide.name}:{block.line}", normalise(line))
        for guide in GUIDES
        for block in blocks(guide)
        if block.lang == "pytb"
        for line in block.lines
        if line.strip()
    ]
    assert lines
    assert [f"{where}: {line}" for where, line in lines if line not in said] == []


def test_command_error_lines_name_djangos_class():
    # ``manage.py`` prints a CommandError as "CommandError: <message>"; the message is the app's.
    _, messages = quoted()
    prefixed = [text for _, text in messages if text.startswith("CommandError: ")]
    assert prefixed
    assert CommandError.__name__ == "CommandError"
    for text in prefixed:
        assert corpus().match(text.removeprefix("CommandError: ")), text


# ---- links and commands --------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in path.read_text().splitlines()
        if re.match(r"#{1,6} ", line)
    }


def test_every_relative_link_resolves():
    broken = []
    count = 0
    for guide in LINKED:
        for target in LINK.findall(prose(guide)):
            if re.match(r"[a-z]+:", target):
                continue
            count += 1
            path, _, anchor = target.partition("#")
            resolved = (guide.parent / path).resolve() if path else guide
            if not resolved.exists():
                broken.append(f"{guide.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{guide.name}: {target} (no such heading)")
    assert count >= 10
    assert broken == []


def commands(guides: Iterable[Path] = LINKED) -> Iterator[tuple[str, list[str]]]:
    """(where, argv after manage.py) of every command the guides show."""
    for guide in guides:
        for block in blocks(guide):
            if block.lang not in ("sh", "console"):
                continue
            for line in block.lines:
                found = MANAGE.search(line.removeprefix("$ "))
                if found:
                    yield f"{guide.name}:{block.line}", shlex.split(found[1], comments=True)
        for code in INLINE_CODE.findall(prose(guide)):
            found = MANAGE.search(code)
            if found:
                yield guide.name, shlex.split(found[1], comments=True)


def test_every_command_the_guides_show_exists_with_its_options():
    available = get_commands()
    shown = list(commands())
    assert len(shown) >= 10
    assert any(argv[:2] == ["atlassian_oauth", "rotate-keys"] for _, argv in shown)
    wrong = []
    for where, argv in shown:
        name, *arguments = argv
        if name not in available:
            wrong.append(f"{where}: no command {name!r}")
            continue
        parser = load_command_class(available[name], name).create_parser("manage.py", name)
        try:
            parser.parse_args(arguments)
        except (CommandError, SystemExit) as error:
            wrong.append(f"{where}: manage.py {shlex.join(argv)}: {error}")
    assert wrong == []
