"""How many COPY streams a large file gets, and the connections that takes (no database)."""

from __future__ import annotations

import pytest

from customer_ratings.errors import ConfigError
from customer_ratings.load import connections_used, default_streams
from customer_ratings.load.context import MAX_STREAMS, STREAMS_ENV


def test_default_is_one_stream_per_core_and_the_variable_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STREAMS_ENV, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert default_streams() == MAX_STREAMS
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert default_streams() == 1
    monkeypatch.setenv(STREAMS_ENV, " 3 ")
    assert default_streams() == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", str(MAX_STREAMS + 1)])
def test_a_bad_streams_variable_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(STREAMS_ENV, value)
    with pytest.raises(ConfigError, match=STREAMS_ENV):
        default_streams()


def test_a_load_holds_its_own_connection_one_per_stream_and_one_for_invalid_rows() -> None:
    assert connections_used(1) == 3
    assert connections_used(2) == 4
