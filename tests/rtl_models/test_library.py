"""The multiplier library: cache, lookup, filters and Pareto subsets."""

import numpy as np
import pytest

from rtl_models import library as L
from rtl_models.library import LibraryError, MultiplierLibrary, pareto_front


@pytest.fixture(scope="module")
def lib():
    return MultiplierLibrary.default()


def test_builtin_library_is_large_and_unique(lib):
    builtins = lib.filter(library="cosim")
    assert len(builtins) >= 30
    assert len({m.key for m in builtins}) == len(builtins)
    assert len(set(builtins.names)) == len(builtins)


def test_cache_roundtrip_is_identical(lib):
    again = L.load_builtins()  # from the cache written by the fixture
    fresh = {m.name: m for m in L.characterize_builtins()}
    for m in again:
        f = fresh[m.name]
        assert m.sha256 == f.sha256
        np.testing.assert_array_equal(m.table, f.table)
        assert m.record() == f.record()


def test_lookup_by_name_key_and_hash(lib):
    hashes = [x.sha256 for x in lib]
    m = next(x for x in lib if hashes.count(x.sha256) == 1)
    assert lib.get(m.key) is m
    assert lib.get(m.sha256[:10]) is m
    assert lib.get(f"{m.library}/{m.version}/{m.name}") is m
    with pytest.raises(LibraryError, match="no multiplier named 'mul8u_nope'"):
        lib.get("mul8u_nope")


def test_exact_designs_share_a_hash_and_hash_lookup_is_ambiguous(lib):
    a, d = lib.get("mul8u_array"), lib.get("mul8u_dadda")
    assert a.sha256 == d.sha256
    with pytest.raises(LibraryError, match="ambiguous"):
        lib.get(a.sha256[:12])


def test_pareto_front_is_non_dominated(lib):
    front = lib.filter(signed=False).pareto("mre", "power")
    pts = np.array([[m.power_mw, m.metrics.mre_pct] for m in front])
    assert np.all(np.diff(pts[:, 0]) >= 0)
    for m in lib.filter(signed=False):
        if m in list(front):
            continue
        p = np.array([m.power_mw, m.metrics.mre_pct])
        assert np.any(np.all(pts <= p, axis=1)), f"{m.name} is not dominated by the front"
    assert any(m.is_exact for m in front), "the cheapest exact design belongs on the front"
    with pytest.raises(ValueError, match="pareto error metric"):
        lib.pareto("foo")


def test_pareto_front_helper():
    pts = np.array([[1, 5], [2, 2], [3, 3], [4, 1], [1, 6]])
    assert sorted(pareto_front(pts).tolist()) == [0, 1, 3]


def test_filters(lib):
    signed = lib.filter(signed=True)
    assert len(signed) >= 3 and all(m.signed for m in signed)
    low = lib.filter(mre_pct=2.0)
    assert all(m.metrics.mre_pct <= 2.0 for m in low)


def test_store_imported_is_all_or_nothing(lib, monkeypatch, tmp_path):
    monkeypatch.setenv("COSIM_CACHE_DIR", str(tmp_path / "cache"))  # no imports from other tests
    ms = [lib.get("mul8u_array"), lib.get("mul8s_bw_dadda")]
    real = L._to_npz_bytes
    calls = {"n": 0}

    def flaky(m):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(m)

    from dataclasses import replace

    ms = [replace(m, library="TestLib", version="9") for m in ms]
    monkeypatch.setattr(L, "_to_npz_bytes", flaky)
    with pytest.raises(OSError):
        L.store_imported(ms)
    assert L.load_imported() == []
    monkeypatch.setattr(L, "_to_npz_bytes", real)
    L.store_imported(ms)
    got = L.load_imported()
    assert sorted(m.name for m in got) == sorted(m.name for m in ms)
    assert MultiplierLibrary.default().get("TestLib/9/mul8u_array").library == "TestLib"
