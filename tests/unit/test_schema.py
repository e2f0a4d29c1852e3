"""schema.py is the one home of the agency columns: the DDL, the rules' limits and SPEC.md agree with it."""

from __future__ import annotations

from psycopg import sql

from customer_ratings import schema
from customer_ratings.db.migrate import AGENCY_TABLE_DDL

SPEC_DDL = """CREATE TABLE IF NOT EXISTS "t" (
    customer_number       INTEGER,
    customer_rating       INTEGER,
    customer_rating_limit INTEGER,
    customer_status       VARCHAR(25)
)"""


def test_the_agency_ddl_is_spec_md_s_and_is_built_from_the_schema() -> None:
    assert AGENCY_TABLE_DDL.format(sql.Identifier("t")).as_string(None) == SPEC_DDL


def test_the_limits_are_postgresql_s_integer_and_a_25_character_status() -> None:
    assert (schema.INT_MIN, schema.INT_MAX) == (-2147483648, 2147483647)
    assert [c.name for c in schema.AGENCY_COLUMNS if c.kind is schema.Kind.INTEGER] == [
        "customer_number", "customer_rating", "customer_rating_limit"]
    assert schema.is_status("customer_status") and not schema.is_status("customer_rating")
    assert not schema.is_status(None)  # an ignored extra column
    assert schema.STATUS_MAX_CHARS == 25
