"""A password in CUSTOMER_RATINGS_DATABASE_URL never appears in any output, whatever the URL's shape and
whatever goes wrong (the CLI in a subprocess), and redact() hides it in every shape."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from customer_ratings.db.url import redact, scrub

from ._helpers import clean_env, cli, said
from .conftest import PasswordServer

SECRET = "S3cr3t-Pa55word"


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://loader:S3cr3t-Pa55word@db:5432/x", "postgresql://loader:***@db:5432/x"),
    ("postgresql+psycopg://loader:S3cr3t-Pa55word@db/x", "postgresql+psycopg://loader:***@db/x"),
    ("postgresql+psycopg2://loader:S3cr3t-Pa55word@db/x", "postgresql+psycopg2://loader:***@db/x"),
    ("postgresq://loader:S3cr3t-Pa55word@db/x", "postgresq://loader:***@db/x"),
    ("postgresql://loader:S3cr3t%Pa55word@db/x", "postgresql://loader:***@db/x"),
    ("postgresql://loader:S3cr3t@Pa55/word@db/x", "postgresql://loader:***@db/x"),
    ("postgresql://db/x?user=loader&password=S3cr3t-Pa55word&sslmode=require",
     "postgresql://db/x?user=loader&password=***&sslmode=require"),
    ("host=db user=loader password=S3cr3t-Pa55word dbname=x", "host=db user=loader password=*** dbname=x"),
    ("host=db password = 'S3cr3t Pa55word' dbname=x", "host=db password = *** dbname=x"),
    ("loader:S3cr3t-Pa55word@db", "loader:***@db"),
])
def test_redact_hides_the_password_in_every_shape(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "Pa55" not in redact(url)
    assert "Pa55" not in scrub(f"error near {url} and {url.replace('S3cr3t', 'pw: S3cr3t')}", url)


def _assert_secret_free(done: object, *secrets: str) -> None:
    text = getattr(done, "stdout", "") + getattr(done, "stderr", "")
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            assert form not in text, f"the password is shown:\n{text}"


@pytest.mark.parametrize(("name", "url", "code", "message"), [
    ("unencoded %", f"postgresql://loader:{SECRET}%zz@127.0.0.1:1/x", 2, "is not a PostgreSQL URL"),
    ("scheme typo", f"postgresq://loader:{SECRET}@127.0.0.1:1/x", 2, "is not a PostgreSQL URL"),
    ("not a URL", f"loader:{SECRET}@127.0.0.1", 2, "is not a PostgreSQL URL"),
    ("wrong port", f"postgresql+psycopg://loader:{SECRET}@127.0.0.1:1/x", 1, "cannot connect to the database"),
    ("unknown host", f"postgresql://loader:{SECRET}@no-such-host.invalid/x", 1, "cannot connect to the database"),
    ("key=value, wrong port", f"host=127.0.0.1 port=1 user=loader password={SECRET}", 1, "cannot connect"),
])
def test_no_error_path_shows_the_password(tmp_path: Path, name: str, url: str, code: int, message: str) -> None:
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=url, CUSTOMER_RATINGS_CONNECT_TIMEOUT="1")
    for args in (["init"], ["report", "--output-dir", str(tmp_path / "out")]):
        done = cli(args, env, timeout=60)
        assert done.returncode == code, said(done)
        assert message in done.stderr, said(done)
        assert "Traceback" not in done.stderr, said(done)
        _assert_secret_free(done, SECRET)


def test_wrong_password_is_not_retried_and_not_shown(tmp_path: Path, password_server: PasswordServer) -> None:
    wrong = "Wr0ng-" + SECRET
    for url in (password_server.url(wrong), password_server.url(wrong).replace("postgresql:", "postgresql+psycopg:"),
                f"host=127.0.0.1 port={password_server.port} user=postgres password={wrong}"):
        env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=url, CUSTOMER_RATINGS_CONNECT_TIMEOUT="60")
        done = cli(["init"], env, timeout=30)  # not retried for 60 s
        assert done.returncode == 2, said(done)
        assert "authentication failed" in done.stderr and "retrying" not in done.stderr, said(done)
        _assert_secret_free(done, wrong, password_server.password)


def test_right_password_in_a_sqlalchemy_url_works_and_is_not_shown(tmp_path: Path,
                                                                   password_server: PasswordServer) -> None:
    url = password_server.url().replace("postgresql:", "postgresql+psycopg:")
    env = clean_env(tmp_path, CUSTOMER_RATINGS_DATABASE_URL=url)
    done = cli(["init"], env)
    assert done.returncode == 0, said(done)
    lines = [line for line in done.stderr.splitlines() if line.startswith("database: ")]
    assert lines == [f"database: postgresql://postgres@127.0.0.1:{password_server.port}/CustomerRatingData"], said(done)
    done = cli(["load", "--data-dir", str(tmp_path / "no-such-folder")], env)
    assert done.returncode == 2, said(done)
    _assert_secret_free(done, password_server.password)
