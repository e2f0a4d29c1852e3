"""Imported first by the package: numpy with a single-threaded OpenBLAS, the environment left as it was.

OpenBLAS starts a worker thread per core when numpy is imported, and each spins for about 0.1 s of CPU before
it sleeps: CPU taken from the loader and the database on a small machine, in every command, for a package
that does no linear algebra. A setting of the user's own, or numpy imported earlier by the host process
(an Airflow worker, say), is left alone.
"""

import os
import sys


def _import_numpy_single_threaded() -> None:
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


_import_numpy_single_threaded()
