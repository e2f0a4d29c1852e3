"""An alert callback for the tests (Variable customer_ratings_alert_callback = tests.airflow.alerts:record):
appends one JSON line per call to the file named by CUSTOMER_RATINGS_TEST_ALERTS."""

from __future__ import annotations

import json
import os
from typing import Any


def record(context: Any) -> None:
    ti = context["ti"]
    line = {"task_id": ti.task_id, "agency": context.get("agency"), "exception": str(context.get("exception"))}
    with open(os.environ["CUSTOMER_RATINGS_TEST_ALERTS"], "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
