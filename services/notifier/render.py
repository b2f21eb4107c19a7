"""Templates and the escaping each channel needs, so hostile post text stays inert literal text.

Every channel renders through Jinja2 templates in ``templates/`` with an environment built
here. HTML templates autoescape. Text templates do not, and use the filters that fit their
target instead:

- ``slack``: Slack's own escaping of ``&``, ``<`` and ``>``, which turns ``<!channel>``,
  ``<@U123>`` and ``<https://evil|bank>`` into plain text;
- ``header``: no CR, LF or other control character in an e-mail header;
- ``oneline``: the post on one line, control characters removed;
- ``https``: a link only when it is an https URL with nothing odd in it, else empty;
- ``clip(n)``: cut at ``n`` characters, with an ellipsis.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

import jinja2

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_IN_URL = re.compile(r"[\s<>\"'`|\\^{}]")


def oneline(text: object) -> str:
    """Control characters (CR/LF injection, terminal escapes) become spaces; whitespace collapses."""
    return " ".join(_CONTROL.sub(" ", str(text)).split())


def clip(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: max(limit - 1, 0)].rstrip() + "…"


def slack(text: object) -> str:
    """Slack mrkdwn escaping: only these three characters can start a link or a mention."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header(text: object) -> str:
    """Safe for an e-mail header: one line, no control characters."""
    return oneline(text)


def https(url: object) -> str:
    """The URL when it is plain https with a host, else empty: no javascript:, data: or spoofed links."""
    value = str(url).strip()
    if _UNSAFE_IN_URL.search(value) or _CONTROL.search(value):
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme == "https" and parts.hostname else ""


def _environment(*, html: bool) -> jinja2.Environment:
    templates = resources.files("services.notifier") / "templates"
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters.update(oneline=oneline, clip=clip, slack=slack, header=header, https=https)
    return environment


@cache
def text_environment() -> jinja2.Environment:
    return _environment(html=False)


@cache
def html_environment() -> jinja2.Environment:
    return _environment(html=True)


def render_text(template: str, **context: object) -> str:
    return text_environment().get_template(template).render(**context).strip()


def render_html(template: str, **context: object) -> str:
    return html_environment().get_template(template).render(**context).strip()
