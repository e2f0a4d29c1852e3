"""CUSTOMER_RATINGS_DATABASE_URL: made acceptable to libpq, and shown without its password whatever its shape.

Users paste URLs from SQLAlchemy (``postgresql+psycopg://``), from Airflow, from a password manager (a ``%``
or an ``@`` left unencoded), or libpq's ``key=value`` form. :func:`redact` hides the password in all of them,
even in a URL libpq cannot parse, so that every message can show the URL a user gave. :func:`scrub` removes
the password from any other text (an error of a library, a log line) as a second line of defence.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import psycopg
from psycopg import conninfo as pg_conninfo

from ..errors import ConfigError

HIDDEN = "***"
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*)://")
_POSTGRES_SCHEME = re.compile(r"(?i)postgres(?:ql)?(?:\+[a-z0-9_]+)?")
# key=value conninfo, or a URL's query: password=secret, password = 'a secret', ?password=secret&...
_KV_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")
# Passwords shorter than this are not searched for in free text: they would match ordinary words.
_MIN_SCRUB = 4
_ENCODING_HINT = ("percent-encode special characters of the user name and password "
                  "(% as %25, @ as %40, / as %2F, : as %3A, # as %23)")


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; the rest as it was, for the user to recognise."""
    match = _SCHEME.match(url)
    if match is None:
        if "=" in url:
            return _KV_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, url)
        at = url.rfind("@")  # no scheme and no key=value: "user:secret@host" at worst
        colon = url.find(":")
        if 0 <= colon < at:
            return url[:colon + 1] + HIDDEN + url[at:]
        return url
    head, rest = url[:match.end()], url[match.end():]
    # The last "@" ends the user info even when the password holds an unencoded "@" or "/": hiding too much
    # (a query holding an "@") is better than showing a password.
    at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        colon = userinfo.find(":")
        if colon >= 0:
            rest = userinfo[:colon + 1] + HIDDEN + rest[at:]
    return head + _QUERY_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, rest)


def secrets_of(url: str | None) -> list[str]:
    """The password(s) written in ``url``, as written and percent-decoded (for :func:`scrub`)."""
    if not url:
        return []
    found: list[str] = []
    match = _SCHEME.match(url)
    if match is not None:
        rest = url[match.end():]
        at = rest.rfind("@")
        if at >= 0 and ":" in rest[:at]:
            found.append(rest[:at].split(":", 1)[1])
        found += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(rest)]
    elif "=" in url:
        found += [m.group(2).strip("'") for m in _KV_PASSWORD.finditer(url)]
    elif 0 <= url.find(":") < url.rfind("@"):
        found.append(url[url.find(":") + 1:url.rfind("@")])
    with_decoded = found + [unquote(s) for s in found] + [quote(unquote(s), safe="") for s in found]
    return sorted({s for s in with_decoded if len(s) >= _MIN_SCRUB}, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """``text`` without any password of ``url`` in it."""
    for secret in secrets_of(url):
        text = text.replace(secret, HIDDEN)
    return text


def normalize(url: str) -> str:
    """A libpq connection string for ``url``; ConfigError (naming the URL without its password) if it is none.

    ``postgresql+psycopg://`` and the like (SQLAlchemy's driver suffix) are read as ``postgresql://``.
    """
    text = url.strip()
    match = _SCHEME.match(text)
    if match is not None:
        if not _POSTGRES_SCHEME.fullmatch(match.group(1)):
            raise ConfigError(
                f"CUSTOMER_RATINGS_DATABASE_URL is not a PostgreSQL URL: {redact(url)}: it must start with "
                "postgresql:// (or postgres://), e.g. postgresql://user@host:5432/CustomerRatingData"
            )
        text = "postgresql://" + text[match.end():]
    elif "=" not in text:
        raise ConfigError(
            f"CUSTOMER_RATINGS_DATABASE_URL is not a PostgreSQL URL: {redact(url)}: use "
            "postgresql://user@host:5432/CustomerRatingData (or libpq's key=value form)"
        )
    try:
        pg_conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        # libpq's message may quote the password: say what to do instead.
        raise ConfigError(
            f"CUSTOMER_RATINGS_DATABASE_URL is not a PostgreSQL URL: {redact(url)}: libpq cannot parse it; "
            + _ENCODING_HINT
        ) from None
    return text


def display(conninfo: str) -> str:
    """``postgresql://user@host:port/dbname`` for a parsed connection string: never a password."""
    params = pg_conninfo.conninfo_to_dict(conninfo)
    user = str(params.get("user") or "")
    host = str(params.get("host") or params.get("hostaddr") or "")
    port = str(params.get("port") or "")
    dbname = str(params.get("dbname") or "")
    if host.startswith("/"):  # a socket directory
        where = f"{user}@" if user else ""
        return f"postgresql://{where}/{dbname}?host={host}"
    netloc = (f"{user}@" if user else "") + host + (f":{port}" if port else "")
    return f"postgresql://{netloc}/{dbname}"
