"""The fake Atlassian's HTML: its consent page and its error page (``_fake_state`` serves them).

The consent page looks like Atlassian's own: who asks (the app by name, the tenant it is sent
back to), what it may do (each scope in words, as Atlassian words it), Accept or Decline. It
says that it is a fake, so nobody types a real password into it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: What Atlassian's consent screen says for each scope: a title and a sentence. Scopes not listed
#: here are shown by their name only.
SCOPE_WORDS: Final[dict[str, tuple[str, str]]] = {
    "read:jira-work": (
        "View Jira issue data",
        "Read project and issue data, search for issues, and see attachments and worklogs.",
    ),
    "write:jira-work": (
        "Create and manage issues",
        "Create and edit issues, post comments as you, create worklogs, and delete issues.",
    ),
    "read:jira-user": (
        "View user profiles",
        "See the Jira user information you can see: names, email addresses and avatars.",
    ),
    "manage:jira-project": (
        "Manage project settings",
        "Edit project settings and create versions and components.",
    ),
    "manage:jira-configuration": (
        "Manage Jira global settings",
        "Take Jira administration actions, such as creating projects and custom fields.",
    ),
    "manage:jira-webhook": (
        "Manage Jira webhooks",
        "Register, refresh and delete the webhooks this app declares.",
    ),
    "read:me": (
        "View your profile",
        "See your Atlassian account's name, email address and picture.",
    ),
    "offline_access": (
        "Keep access when you are not using the app",
        "Stay connected after you close it, until you remove it under Connected apps.",
    ),
    "read:confluence-content.all": (
        "Read Confluence detailed content",
        "Read pages, blog posts, comments and attachments you can see.",
    ),
    "read:confluence-content.summary": (
        "Read Confluence content summaries",
        "See titles and summaries of the pages and blog posts you can see.",
    ),
    "read:confluence-space.summary": (
        "Read Confluence space summaries",
        "See the names and descriptions of the spaces you can see.",
    ),
    "write:confluence-content": (
        "Write Confluence content",
        "Create and edit pages, blog posts and comments as you.",
    ),
    "search:confluence": (
        "Search Confluence",
        "Search the content and spaces you can see.",
    ),
}

STYLE: Final = """
:root { color-scheme: light; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", system-ui, Roboto, sans-serif;
  color: #172b4d; background: #f7f8f9; }
.fake-banner { background: #fff7d6; color: #533f04; text-align: center; padding: .4rem 1rem;
  font-size: 12px; border-bottom: 1px solid #f8e6a0; }
.brand { display: flex; justify-content: center; align-items: center; gap: .5rem;
  margin: 2rem 0 1.25rem; font-size: 1.35rem; font-weight: 650; color: #0c66e4; }
.brand svg { width: 26px; height: 26px; }
.brand h1 { font: inherit; margin: 0; }
.brand small { font-size: .8rem; font-weight: 500; color: #626f86; }
main { max-width: 26rem; margin: 0 auto 3rem; background: #fff; border-radius: 6px;
  box-shadow: 0 1px 1px rgba(9,30,66,.25), 0 0 1px rgba(9,30,66,.31); padding: 2rem 2.25rem; }
.apps { display: flex; justify-content: center; align-items: center; gap: .75rem;
  margin-bottom: 1.25rem; color: #8590a2; }
.tile { width: 48px; height: 48px; border-radius: 8px; display: grid; place-items: center;
  font-weight: 700; font-size: 1.3rem; color: #fff; background: #6e5dc6; }
.tile.atlassian { background: #0c66e4; }
h2 { font-size: 1.2rem; text-align: center; margin: 0 0 .5rem; line-height: 1.3; }
.asker { text-align: center; color: #44546f; margin: 0 0 1.5rem; }
.asker small { color: #626f86; font-size: 12px; }
label, .section { display: block; font-weight: 600; font-size: 12px; color: #626f86;
  margin: 1.25rem 0 .35rem; text-transform: uppercase; letter-spacing: .03em; }
select { width: 100%; padding: .5rem; border: 2px solid #dcdfe4; border-radius: 3px;
  font: inherit; background: #fafbfc; }
#scopes { list-style: none; padding: 0; margin: 0; border-top: 1px solid #ebecf0; }
#scopes li { padding: .6rem 0 .6rem 1.6rem; border-bottom: 1px solid #ebecf0; position: relative; }
#scopes li::before { content: "\\2713"; position: absolute; left: .2rem; color: #22a06b;
  font-weight: 700; }
#scopes strong { display: block; }
#scopes span { display: block; color: #44546f; font-size: 13px; }
#scopes code { color: #626f86; font-size: 11px; }
.returns { color: #626f86; font-size: 12px; margin: 1.25rem 0 0; word-break: break-all; }
.actions { display: flex; justify-content: flex-end; gap: .5rem; margin-top: 1.5rem; }
button { font: inherit; font-weight: 500; padding: .45rem 1rem; border-radius: 3px; border: 0;
  cursor: pointer; }
button.accept { background: #0c66e4; color: #fff; }
button.accept:hover { background: #0055cc; }
button.decline { background: #f1f2f4; color: #44546f; }
button.decline:hover { background: #dcdfe4; }
footer { text-align: center; color: #626f86; font-size: 12px; margin-bottom: 2rem; }
.error { text-align: center; }
"""

LOGO: Final = (
    '<svg viewBox="0 0 32 32" aria-hidden="true"><path fill="currentColor" d="M9.6 15.1c-.3-.4'
    "-.9-.4-1.2.1L2.1 27.9c-.2.5.1 1 .6 1h8.8c.3 0 .5-.2.7-.4 1.9-3.9.8-9.8-2.6-13.4zM14.3 3.6c"
    "-3.5 5.5-3.3 11.7-1 16.3l4.3 8.6c.1.2.4.4.7.4h8.8c.5 0 .8-.5.6-1L15.5 3.6c-.2-.5-.9-.5-1.2 0"
    'z"/></svg>'
)


@dataclass(frozen=True)
class AccountChoice:
    account_id: str
    name: str
    email: str
    selected: bool


def page(title: str, body_html: str, *, brand_note: str = "") -> str:
    """A whole HTML page in the fake's own look; ``brand_note`` follows the name in its logo."""
    note = f" <small>{html.escape(brand_note)}</small>" if brand_note else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        '<p class="fake-banner">A fake Atlassian for tests and demos: it runs on this machine '
        "and never asks for a password.</p>\n"
        f'<div class="brand">{LOGO}<h1>Fake Atlassian{note}</h1></div>\n'
        f"{body_html}\n</body></html>\n"
    )


def error_body(sentence_html: str) -> str:
    return f'<main class="error">\n<h2>Something went wrong</h2>\n<p>{sentence_html}</p>\n</main>'


def consent_body(
    *,
    app_name: str,
    client_id: str,
    tenant: str,
    redirect_uri: str,
    scopes: Iterable[str],
    accounts: Iterable[AccountChoice],
    consent_id: str,
) -> str:
    """The consent form: the app, the tenant asking, the scopes in words, the account choice."""
    esc = html.escape
    options = "\n".join(
        f'<option value="{esc(a.account_id)}"{" selected" if a.selected else ""}>'
        f"{esc(a.name)} &lt;{esc(a.email)}&gt;</option>"
        for a in accounts
    )
    items = []
    for scope in scopes:
        title, sentence = SCOPE_WORDS.get(scope, (scope, ""))
        words = f"<strong>{esc(title)}</strong>"
        if sentence:
            words += f"<span>{esc(sentence)}</span>"
        items.append(f'<li data-scope="{esc(scope)}">{words}<code>{esc(scope)}</code></li>')
    initial = esc((app_name.strip()[:1] or "?").upper())
    return f"""<main>
<div class="apps" aria-hidden="true"><span class="tile">{initial}</span> &#8644;
<span class="tile atlassian">A</span></div>
<h2><span id="app-name">{esc(app_name)}</span> is requesting access to your Atlassian account</h2>
<p class="asker">Asked by <strong id="tenant">{esc(tenant)}</strong><br>
<small>client id <code id="client-id">{esc(client_id)}</code></small></p>
<form method="post" action="/authorize">
<input type="hidden" name="consent_id" value="{esc(consent_id)}">
<label for="account_id">Atlassian account</label>
<select id="account_id" name="account_id">
{options}
</select>
<p class="section">This app will be able to</p>
<ul id="scopes">
{chr(10).join(items)}
</ul>
<p class="returns">After you choose, you go back to <code>{esc(redirect_uri)}</code>.</p>
<div class="actions">
<button class="decline" type="submit" name="decision" value="decline">Decline</button>
<button class="accept" type="submit" name="decision" value="accept">Accept</button>
</div>
</form>
</main>
<footer>You can remove the app's access at any time under Connected apps.</footer>"""
