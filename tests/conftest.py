"""Test-wide settings: single-threaded BLAS/OpenMP and a private cache directory."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep the multiplier cache (and anything else cached) out of the user's home."""
    old = os.environ.get("COSIM_CACHE_DIR")
    os.environ["COSIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("cosim-cache"))
    yield
    if old is None:
        os.environ.pop("COSIM_CACHE_DIR", None)
    else:
        os.environ["COSIM_CACHE_DIR"] = old
