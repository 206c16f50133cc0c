"""Imported before conftest and the test modules: the place for what must hold before numpy and torch load."""

import os

if "PYTEST_XDIST_WORKER" in os.environ:  # under `pytest -n N`, each worker's torch and OpenBLAS take one thread, not every core
    os.environ.setdefault("OMP_NUM_THREADS", "1")
