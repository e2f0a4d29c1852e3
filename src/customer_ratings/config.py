"""What a user can configure: the sources file (TOML) and the environment (Settings).

Both are typed, immutable models validated at start-up. Validation collects every problem and raises one
:class:`ConfigError` listing them all, before anything touches the database.
"""

from __future__ import annotations

import codecs
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .display import safe
from .errors import ConfigError
from .schema import STATUS_MAX_CHARS

DEFAULT_DATABASE = "CustomerRatingData"

# Table names are also quoted with sql.Identifier everywhere; this rule keeps them usable unquoted in psql.
_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
# Tables the tool owns; an agency may not take their names.
RESERVED_TABLES = frozenset(
    {"customer_rating", "file_invalid_rows", "load_history", "source_current", "schema_migrations"}
)
_SOURCE_KEYS = frozenset(
    {"name", "table", "file_pattern", "encoding", "allowed_status", "extra_columns", "max_invalid_percent",
     "min_rows", "follow_symlinks"}
)


@dataclass(frozen=True)
class Source:
    """One agency: where its files are, which table they replace, and how strict to be with them."""

    name: str
    table: str
    file_pattern: str
    encoding: str = "utf-8"
    allowed_status: tuple[str, ...] | None = None
    extra_columns: Literal["reject", "ignore"] = "reject"
    max_invalid_percent: float = 100.0
    min_rows: int = 0
    follow_symlinks: bool = False
    """Whether a file in the data folder may be a symlink to a file outside it (off: such a file is rejected)."""

    @property
    def dated(self) -> bool:
        """Whether ``file_pattern`` names the day (has a ``{date:...}`` placeholder)."""
        return any(isinstance(p, DatePart) for p in split_pattern(self.file_pattern))


@dataclass(frozen=True)
class DatePart:
    """A ``{date:<strftime>}`` placeholder of a ``file_pattern``: the as-of date in that format."""

    format: str


# strftime directives a date placeholder may use (those with a fixed meaning on every platform).
_DIRECTIVES = frozenset("aAbBdHIjmMpSUwWyYGuVze%")
_DATE_OPEN = "{date:"


def split_pattern(pattern: str) -> list[str | DatePart]:
    """A ``file_pattern`` as glob text and date placeholders. ``{{`` and ``}}`` stand for literal braces.

    Raises ValueError saying what is wrong (an unknown placeholder, an unbalanced brace, a bad format).
    """
    parts: list[str | DatePart] = []
    text: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith(("{{", "}}"), i):
            text.append(ch)
            i += 2
        elif ch == "}":
            raise ValueError(f"has an unbalanced '}}' at position {i + 1} (write '}}}}' for a literal brace)")
        elif ch == "{":
            end = pattern.find("}", i)
            inner = pattern[i + 1:end] if end >= 0 else ""
            if end < 0 or "{" in inner:
                raise ValueError(f"has an unbalanced '{{' at position {i + 1} (write '{{{{' for a literal brace)")
            if not pattern.startswith(_DATE_OPEN, i):
                raise ValueError(f"has an unknown placeholder {{{inner}}}: the only one is {{date:<strftime>}}, "
                                 "e.g. {date:%Y%m%d}")
            fmt = pattern[i + len(_DATE_OPEN):end]
            _check_date_format(fmt)
            if text:
                parts.append("".join(text))
                text = []
            parts.append(DatePart(fmt))
            i = end + 1
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append("".join(text))
    return parts


def _check_date_format(fmt: str) -> None:
    directives = 0
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            code = fmt[i + 1:i + 2]
            if code not in _DIRECTIVES:
                raise ValueError(f"has {{date:{fmt}}} with an unknown strftime directive '%{code}'")
            directives += code != "%"
            i += 2
        else:
            i += 1
    if not directives:
        raise ValueError(f"has {{date:{fmt}}} without a strftime directive (e.g. %Y%m%d)")
    if "/" in fmt or "\\" in fmt:
        raise ValueError(f"has {{date:{fmt}}}, which would make a path, not a file name")


@dataclass(frozen=True)
class Config:
    """The validated sources file."""

    sources: tuple[Source, ...]
    path: Path | None = None

    def source(self, name: str) -> Source:
        """The source called ``name``; ConfigError if there is none."""
        for src in self.sources:
            if src.name == name:
                return src
        raise ConfigError(f"no source named {name!r} in {self.path or 'the built-in config'}")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded server's home: ``$XDG_DATA_HOME/customer-ratings``, i.e. ``~/.local/share/customer-ratings``.

    Per user, not per folder: running from another folder never silently starts an empty database.
    A relative XDG_DATA_HOME is ignored, as the XDG specification says.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path(env.get("HOME") or Path.home()) / ".local/share"
    return base / "customer-ratings"


@dataclass(frozen=True)
class Settings:
    """Where the database is. ``database_url`` None means the embedded server under ``home``.

    ``connect_timeout``: seconds a first connection is retried for. ``schema``: the schema holding the tables
    (every connection's ``search_path``), created if missing.
    """

    database_url: str | None = None
    home: Path = field(default_factory=default_home)
    connect_timeout: float = 30.0
    schema: str = "public"

    def __repr__(self) -> str:  # the URL may hold a password: never show it
        from .db.url import redact

        url = None if self.database_url is None else redact(self.database_url)
        return (f"Settings(database_url={url!r}, home={self.home!r}, connect_timeout={self.connect_timeout!r}, "
                f"schema={self.schema!r})")

    @classmethod
    def from_env(
        cls,
        database_url: str | None = None,
        home: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from arguments, falling back to the environment: CUSTOMER_RATINGS_DATABASE_URL,
        CUSTOMER_RATINGS_HOME, CUSTOMER_RATINGS_CONNECT_TIMEOUT (default 30 s), CUSTOMER_RATINGS_SCHEMA
        (default ``public``). Every problem is reported at once (ConfigError).
        """
        env = os.environ if environ is None else environ
        url = database_url or env.get("CUSTOMER_RATINGS_DATABASE_URL") or None
        home_value = home or env.get("CUSTOMER_RATINGS_HOME") or default_home(env)
        problems: list[str] = []
        raw_timeout = env.get("CUSTOMER_RATINGS_CONNECT_TIMEOUT", "").strip()
        timeout = 30.0
        if raw_timeout:
            try:
                timeout = float(raw_timeout)
            except ValueError:
                timeout = -1.0
            if not 0 <= timeout < float("inf"):
                problems.append(f"CUSTOMER_RATINGS_CONNECT_TIMEOUT must be a number of seconds >= 0, "
                                f"not {raw_timeout!r}")
        schema = env.get("CUSTOMER_RATINGS_SCHEMA", "").strip() or "public"
        if not _TABLE_RE.fullmatch(schema) or schema.startswith("pg_"):
            problems.append(f"CUSTOMER_RATINGS_SCHEMA {schema!r} is not a valid schema name (lowercase letters, "
                            "digits and '_', not starting with a digit or pg_, at most 63 characters)")
        if problems:
            raise ConfigError(problems)
        return cls(database_url=url, home=Path(home_value).expanduser().absolute(), connect_timeout=timeout,
                   schema=schema)


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate a sources file; ``None`` gives the built-in default (agencies A to D)."""
    if path is None:
        text = resources.files(__package__).joinpath("default_sources.toml").read_text("utf-8")
        return parse_config(text, None)
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: check the --config path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path | None) -> Config:
    """Validate the TOML text of a sources file, reporting every problem at once."""
    where = str(path) if path else "built-in config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    problems: list[str] = []
    unknown_top = sorted(set(data) - {"sources"})
    if unknown_top:
        problems.append(f"{where}: unknown top-level key(s) {', '.join(unknown_top)} (only [[sources]] is read)")
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        problems.append(f"{where}: no [[sources]] entries: add at least one agency")
        raise ConfigError(problems)
    sources: list[Source] = []
    for i, raw in enumerate(raw_sources, start=1):
        src = _parse_source(raw, f"{where}: sources[{i}]", problems)
        if src is not None:
            sources.append(src)
    _check_unique(sources, "name", where, problems)
    _check_unique(sources, "table", where, problems)
    if problems:
        raise ConfigError(problems)
    return Config(sources=tuple(sources), path=path)


def _parse_source(raw: Any, where: str, problems: list[str]) -> Source | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table with name, table and file_pattern")
        return None
    before = len(problems)
    label = f"{where} ({safe(raw['name'])})" if isinstance(raw.get("name"), str) else where
    for key in sorted(set(raw) - _SOURCE_KEYS):
        problems.append(f"{label}: unknown key {key!r} (allowed: {', '.join(sorted(_SOURCE_KEYS))})")
    for key in ("name", "table", "file_pattern"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problems.append(f"{label}: {key} is required and must be a non-empty string")
    name, table = raw.get("name"), raw.get("table")
    if isinstance(name, str) and name and not _NAME_RE.fullmatch(name):
        problems.append(f"{label}: name {name!r} must be 1-63 letters, digits, '_', '.' or '-'")
    if isinstance(table, str) and table:
        if not _TABLE_RE.fullmatch(table):
            problems.append(
                f"{label}: table {table!r} is not a valid table name "
                "(lowercase letters, digits and '_', not starting with a digit, at most 63 characters)"
            )
        elif table in RESERVED_TABLES or table.startswith("customer_rating__"):
            problems.append(f"{label}: table {table!r} is reserved for the tool's own tables")
    pattern = raw.get("file_pattern")
    if isinstance(pattern, str) and ("/" in pattern or "\\" in pattern):
        problems.append(f"{label}: file_pattern {pattern!r} must match file names, not paths")
    elif isinstance(pattern, str) and pattern:
        try:
            split_pattern(pattern)
        except ValueError as exc:
            problems.append(f"{label}: file_pattern {pattern!r} {exc}")
    encoding = raw.get("encoding", "utf-8")
    try:
        encoding = codecs.lookup(encoding).name if isinstance(encoding, str) else None
    except LookupError:
        encoding = None
    if encoding is None:
        problems.append(f"{label}: encoding {raw.get('encoding')!r} is not a known Python codec")
    allowed = raw.get("allowed_status")
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed or not all(isinstance(s, str) and s for s in allowed):
            problems.append(f"{label}: allowed_status must be a non-empty list of non-empty strings")
            allowed = None
        else:
            for s in allowed:
                if len(s) > STATUS_MAX_CHARS or s != s.strip(" \t"):
                    problems.append(f"{label}: allowed_status {s!r} can never match (over {STATUS_MAX_CHARS} "
                                    "characters or surrounding spaces)")
    extra = raw.get("extra_columns", "reject")
    if extra not in ("reject", "ignore"):
        problems.append(f"{label}: extra_columns must be \"reject\" or \"ignore\", not {extra!r}")
    pct = raw.get("max_invalid_percent", 100.0)
    if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
        problems.append(f"{label}: max_invalid_percent must be a number from 0 to 100, not {pct!r}")
    min_rows = raw.get("min_rows", 0)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
        problems.append(f"{label}: min_rows must be a whole number >= 0, not {min_rows!r}")
    follow = raw.get("follow_symlinks", False)
    if not isinstance(follow, bool):
        problems.append(f"{label}: follow_symlinks must be true or false, not {follow!r}")
    if len(problems) > before:
        return None
    assert isinstance(encoding, str)
    return Source(
        name=raw["name"],
        table=raw["table"],
        file_pattern=raw["file_pattern"],
        encoding=encoding,
        allowed_status=tuple(allowed) if allowed else None,
        extra_columns=extra,
        max_invalid_percent=float(pct),
        min_rows=min_rows,
        follow_symlinks=follow,
    )


def _check_unique(sources: list[Source], attr: str, where: str, problems: list[str]) -> None:
    seen: dict[str, str] = {}
    for src in sources:
        value = getattr(src, attr)
        if value in seen:
            problems.append(f"{where}: {attr} {value!r} is used by both {seen[value]!r} and {src.name!r}")
        else:
            seen[value] = src.name
