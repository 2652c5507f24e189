"""Small HTML building blocks of the site: escaping, links, badges, key/value tables and the page frame.

Every text that comes from the leaderboard goes through :func:`esc`; functions that return HTML say so in their
name or docstring and take already-escaped fragments only where their parameter is called ``html``.
"""

from __future__ import annotations

import html as _html
import json
import re
from typing import Any, Iterable, Sequence
from urllib.parse import quote

import zsrbench

ASSETS = ("site.css", "site.js")
VERDICT_CLASSES = {"pass": "pass", "warn": "warn", "fail": "fail", "none": "none", "n/a": "none"}


def esc(value: Any) -> str:
    """``value`` as HTML text (``& < > " '`` escaped); None is the empty string."""
    return "" if value is None else _html.escape(str(value), quote=True)


def href(path: str) -> str:
    """A relative link to a page of the site (path segments URL-quoted, then attribute-escaped)."""
    return esc(quote(path, safe="/#.-_~+"))


def link(url: str | None, text: str, *, external: bool = False, cls: str | None = None,
         title: str | None = None) -> str:
    """``<a>`` around the escaped ``text``; plain escaped text when ``url`` is None."""
    if external and url and not re.match(r"https?://", url.strip(), re.IGNORECASE):
        url = None  # only web addresses become external links (never javascript: or data:)
    if not url:
        return esc(text)
    target = esc(url.strip()) if external else href(url)
    extra = (' rel="noopener noreferrer"' if external else "") + (f' class="{esc(cls)}"' if cls else "") + \
        (f' title="{esc(title)}"' if title else "")
    return f'<a href="{target}"{extra}>{esc(text)}</a>'


def badge(text: str, cls: str, title: str | None = None) -> str:
    t = f' title="{esc(title)}"' if title else ""
    return f'<span class="badge {esc(cls)}"{t}>{esc(text)}</span>'


def verdict_badge(verdict: str | None, title: str | None = None) -> str:
    v = verdict or "none"
    return badge("no audit" if v == "none" else v, VERDICT_CLASSES.get(v, "none"), title)


def code(text: Any) -> str:
    return f"<code>{esc(text)}</code>"


def value_html(value: Any) -> str:
    """Any JSON-like value as HTML: dicts as nested key/value tables, lists as lists, scalars as text."""
    if isinstance(value, dict):
        if not value:
            return '<span class="muted">none</span>'
        return kv_table([(str(k), value_html(v)) for k, v in value.items()], cls="kv nested")
    if isinstance(value, (list, tuple)):
        if not value:
            return '<span class="muted">none</span>'
        if all(not isinstance(v, (dict, list, tuple)) for v in value) and sum(len(str(v)) for v in value) < 80:
            return esc(", ".join(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in value))
        return "<ul>" + "".join(f"<li>{value_html(v)}</li>" for v in value) + "</ul>"
    if value is None:
        return '<span class="muted">–</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return esc(f"{value:g}")
    return esc(value)


def kv_table(rows: Iterable[tuple[str, str]], cls: str = "kv") -> str:
    """A two-column table: escaped keys, values given as HTML."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{esc(cls)}"><tbody>{body}</tbody></table>'


def bullet_list(items: Sequence[str], cls: str = "notes") -> str:
    """A list of escaped lines; lines starting with two spaces and "- " nest under the previous one."""
    if not items:
        return ""
    out, open_sub = [f'<ul class="{esc(cls)}">'], False
    for line in items:
        if line.startswith("  - "):
            if not open_sub:
                out.append("<ul>")
                open_sub = True
            out.append(f"<li>{esc(line[4:])}</li>")
            continue
        if open_sub:
            out.append("</ul>")
            open_sub = False
        out.append(f"<li>{esc(line)}</li>")
    if open_sub:
        out.append("</ul>")
    out.append("</ul>")
    return "".join(out)


def page(title: str, body_html: str, *, depth: int, site_title: str, crumbs: Sequence[tuple[str | None, str]] = (),
         script: bool = False) -> str:
    """A whole page: ``depth`` is how many folders below the site's root it lies (for relative links)."""
    root = "../" * depth
    nav = [link(f"{root}index.html", site_title)]
    nav += [link(f"{root}{url}" if url else None, text) for url, text in crumbs]
    js = f'<script src="{href(root + "assets/site.js")}" defer></script>' if script else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="zsrbench site {esc(zsrbench.__version__)}">'
        f"<title>{esc(title)} · {esc(site_title)}</title>"
        f'<link rel="stylesheet" href="{href(root + "assets/site.css")}">{js}</head>\n<body>'
        f'<nav class="crumbs">{" › ".join(nav)}</nav>\n<main>\n<h1>{esc(title)}</h1>\n{body_html}\n</main>\n'
        f'<footer>Made by <code>zsrbench site</code> (zsrbench {esc(zsrbench.__version__)}) from the leaderboard\'s '
        "entries; every number links back to the entry and revision it comes from.</footer>\n</body></html>\n"
    )
