"""Real Airflow for the DAG tests: a throwaway AIRFLOW_HOME with a SQLite metadata database.

Airflow reads its configuration when it is first imported, so the environment is set here, when pytest loads
this file, before any test module imports Airflow. Nothing is set when Airflow is not installed (the tests are
then skipped, see test_dags.py). The database the DAGs load into is the session's PostgreSQL server from
tests/conftest.py (a fresh database per test), given to the DAGs as the Airflow Connection customer_ratings_db.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import conninfo as pg_conninfo

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
SAMPLE = REPO / "tests" / "data" / "seed-sample"
AIRFLOW_INSTALLED = importlib.util.find_spec("airflow") is not None
SKIP_REASON = (
    "Apache Airflow is not installed: the DAG tests need the airflow extra "
    "(pip install -e '.[airflow]' -c constraints/airflow-3.3-py3.11.txt)"
)

if AIRFLOW_INSTALLED:
    _home = tempfile.mkdtemp(prefix="customer-ratings-airflow-")
    atexit.register(shutil.rmtree, _home, True)
    # Never touch a developer's own Airflow: forget whatever configures it, then point at the temp home.
    for _key in [k for k in os.environ if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
        del os.environ[_key]
    os.environ.update(
        {
            "AIRFLOW_HOME": _home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # paused DAGs get no asset-triggered runs
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": f"{_home}/logs",
        }
    )


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The Airflow metadata database, created once per session."""
    from airflow.utils import db

    db.initdb()


@pytest.fixture(scope="session")
def dagbag(airflow_db: None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def airflow_conn_uri(database_url: str) -> str:
    """The test database as an Airflow connection URI, the way users write them: postgresql://... with the
    database as path and, for a Unix socket, the socket directory as the ``host`` query parameter."""
    params = pg_conninfo.conninfo_to_dict(database_url)
    host, port = str(params.get("host") or ""), params.get("port")
    user, password = params.get("user"), params.get("password")
    auth = ""
    if user:
        auth = str(user) + (f":{password}" if password else "") + "@"
    socket = host.startswith("/")
    netloc = ("" if socket else host) + (f":{port}" if port else "")
    query = f"?host={host}" if socket else ""
    return f"postgresql://{auth}{netloc}/{params['dbname']}{query}"


@pytest.fixture
def airflow_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A data folder holding the four sample agency files, an output folder, and the Connection and Variables
    the DAGs read: the Connection and the data folder as AIRFLOW_CONN_/AIRFLOW_VAR_ environment variables, the
    output folder as a plain CUSTOMER_RATINGS_OUTPUT_DIR, as a user may set them."""
    data_dir, output_dir = tmp_path / "data", tmp_path / "out"
    data_dir.mkdir()
    for path in SAMPLE.glob("Customer Rating Agency *.csv"):
        shutil.copyfile(path, data_dir / path.name)
    (data_dir / "README.txt").write_text("not an agency file\n")
    monkeypatch.setenv("AIRFLOW_CONN_CUSTOMER_RATINGS_DB", airflow_conn_uri(database_url))
    monkeypatch.setenv("AIRFLOW_VAR_CUSTOMER_RATINGS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CUSTOMER_RATINGS_OUTPUT_DIR", str(output_dir))
    for name in ("CUSTOMER_RATINGS_DATABASE_URL", "CUSTOMER_RATINGS_CONFIG", "CUSTOMER_RATINGS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield {"data_dir": data_dir, "output_dir": output_dir, "database_url": database_url}

