"""LUT GEMM / conv kernels: every fast path bit-exact against the plain lookup reference."""

import numba
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cosim import axkernels as ak
from rtl_models.metrics import exact_table

SETTINGS = settings(max_examples=40, deadline=None)
VALS = {s: ak.code_values(s) for s in (False, True)}


# -- tables ----------------------------------------------------------------------------------
def bits(signed):
    c = np.arange(256)
    return ((c[:, None] >> np.arange(8)[None, :]) & 1).astype(np.int64)


def truncated(t, signed=False, correction=0):
    """Drop partial products a_i b_j with i + j < t (a NumPy formula, not the design module)."""
    if signed:
        return None
    b = bits(False)
    keep = (np.add.outer(np.arange(8), np.arange(8)) >= t).astype(np.int64) << np.add.outer(np.arange(8), np.arange(8))
    return (b @ keep @ b.T + correction).astype(np.uint16)


def perforated(j, k, signed):
    """Operand B with bits j..j+k-1 cleared (partial-product rows removed)."""
    v = VALS[signed]
    bb = np.arange(256) & ~(((1 << k) - 1) << j)
    bv = np.where(bb >= 128, bb - 256, bb) if signed else bb
    t = np.multiply.outer(v, bv)
    return t.astype(np.int16 if signed else np.uint16)


def random_lowrank(rng, rank, signed, mag=100):
    """A random rank-`rank` product part plus random linear terms (codes 1..rank pick a unit basis,
    so an integer factorization with small factors exists)."""
    u = rng.integers(-mag, mag + 1, (rank, 256))
    u[:, 1:rank + 1] = np.eye(rank, dtype=np.int64)
    v = rng.integers(-mag, mag + 1, (rank, 256))
    t = u.T @ v + rng.integers(-50, 50, 256)[:, None] + rng.integers(-50, 50, 256)[None, :]
    return np.clip(t, -32768, 32767).astype(np.int16) if signed else (t - t.min()).astype(np.uint16)


_POOL: dict = {}


def table_for(kind, rng, signed):
    """One of three fixed tables per (kind, signedness): their analyses are cached across examples."""
    key = (kind, signed)
    if key not in _POOL:
        _POOL[key] = [_make_table(kind, np.random.default_rng(1000 + i), signed) for i in range(3)]
    return _POOL[key][int(rng.integers(0, 3))]


def _make_table(kind, rng, signed):
    if kind == "exact":
        return exact_table(signed).astype(np.int16 if signed else np.uint16)
    if kind == "trunc":
        return truncated(int(rng.integers(1, 9)), correction=int(rng.integers(0, 200))) if not signed else \
            perforated(int(rng.integers(0, 6)), int(rng.integers(1, 3)), True)
    if kind == "perf":
        return perforated(int(rng.integers(0, 6)), int(rng.integers(1, 3)), signed)
    if kind == "lowrank":
        return random_lowrank(rng, int(rng.integers(1, 4)), signed)
    t = rng.integers(0, 65536, (256, 256))
    return (t - 32768).astype(np.int16) if signed else t.astype(np.uint16)


KINDS = ["exact", "trunc", "perf", "lowrank", "random"]


def paths_for(table, signed):
    an = ak.analyze((table, signed))
    paths = ["auto", "lookup", "naive"]
    if an.factored:
        paths.append(an.kind)
    return an, paths


def variants_for(table, signed):
    """(path, kwargs) pairs: every path, and every implementation of the lookup and factored
    paths (int16 / int32 lookup sums, patch or row-window convolutions; torch direct
    convolution, NHWC or NCHW planes / im2col + BLAS; float / int8 factored backends)."""
    an, paths = paths_for(table, signed)
    out = [(p, {}) for p in paths]
    out.append(("lookup", {"lookup_variant": "wide"}))
    out.append(("lookup", {"lookup_layout": "patches"}))  # (convolutions: "auto" takes row windows where they fit)
    if an.narrow is not None:
        out.append(("lookup", {"lookup_variant": "narrow"}))
    if an.factored:
        out.append((an.kind, {"conv_backend": "blas"}))
        out += [(an.kind, {"conv_layout": lay}) for lay in ("nhwc", "nchw")]
        out.append((an.kind, {"factored_backend": "float"}))
        if ak.int8_gemm() is not None and an.int8 is not None:
            out.append((an.kind, {"factored_backend": "int8"}))
    return out


# -- analysis --------------------------------------------------------------------------------
def test_analysis_kinds_of_formula_tables():
    assert ak.analyze((exact_table(False).astype(np.uint16), False)).kind == "exact"
    assert ak.analyze((exact_table(True).astype(np.int16), True)).kind == "exact"
    an = ak.analyze((truncated(6, correction=80), False))
    assert an.kind == "bitplane" and an.rank == 7
    assert ak.analyze((perforated(1, 2, False), False)).rank == 1
    assert ak.analyze((perforated(0, 1, True), True)).kind == "bitplane"
    rng = np.random.default_rng(0)
    an = ak.analyze((random_lowrank(rng, 3, True), True))
    assert an.kind == "lowrank" and an.rank == 3
    assert ak.analyze((rng.integers(0, 65536, (256, 256)).astype(np.uint16), False)).kind == "lookup"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("signed", [False, True])
def test_decomposition_reproduces_table(kind, signed):
    rng = np.random.default_rng(hash((kind, signed)) % 2**32)
    t = table_for(kind, rng, signed)
    an = ak.analyze((t, signed))
    if not an.factored:
        return
    rebuilt = an.const + an.alpha[:, None] + an.beta[None, :] + an.U.T @ an.V
    assert np.array_equal(rebuilt, t.astype(np.int64))
    U, V, c, al, be = ak._centre(an.U, an.V, an.const, an.alpha, an.beta)
    assert np.array_equal(c + al[:, None] + be[None, :] + U.T @ V, t.astype(np.int64))


@SETTINGS
@given(rank=st.integers(0, 5), n=st.integers(1, 30), m=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_integer_factorize_exact(rank, n, m, seed):
    rng = np.random.default_rng(seed)
    mat = rng.integers(-9, 10, (n, rank)) @ rng.integers(-9, 10, (rank, m))
    fac = ak.integer_factorize(mat, 8)
    U, V = fac
    assert U.shape[1] <= rank
    assert np.array_equal(U @ V, mat)


def test_moebius_detects_bilinear_tables():
    rng = np.random.default_rng(3)
    b = bits(False)
    W = rng.integers(-20, 20, (8, 8))
    t = 7 + (b @ rng.integers(-5, 5, 8))[:, None] + (b @ rng.integers(-5, 5, 8))[None, :] + b @ W @ b.T
    bl = ak.bilinear_bits(t)
    assert bl is not None and np.array_equal(bl[3], W) and bl[0] == 7
    t2 = t.copy()
    t2[3, 5] += 1  # one entry off: no longer bilinear in the bits
    assert ak.bilinear_bits(t2) is None


def test_builtin_designs_take_the_expected_paths():
    designs = pytest.importorskip("rtl_models.designs").load_all()
    want = {"mul8u_array": "exact", "mul8s_bw_array": "exact", "mul8u_trunc_t6": "bitplane",
            "mul8u_perf_j1_k2": "bitplane", "mul8u_bam_h1_v6": "bitplane", "mul8u_drum_k4": "lowrank",
            "mul8u_roba": "lowrank", "mul8u_mitchell": "lookup"}
    rng = np.random.default_rng(4)
    A = rng.integers(0, 256, (23, 70)).astype(np.uint8)
    B = rng.integers(0, 256, (70, 9)).astype(np.uint8)
    for name, kind in want.items():
        if name not in designs:
            continue
        spec = designs[name]
        m = (spec.reference_table(), spec.signed)
        assert ak.analyze(m).kind == kind, name
        ref = ak.lut_gemm_reference(A, B, m)
        for path in ("auto", "lookup", kind if kind != "lookup" else "naive"):
            assert np.array_equal(ak.PreparedGemm(B, m, path)(A), ref), (name, path)


# -- GEMM property tests ---------------------------------------------------------------------
@SETTINGS
@given(kind=st.sampled_from(KINDS), signed=st.booleans(), M=st.integers(1, 40), K=st.integers(1, 300),
       N=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_gemm_every_path_matches_reference(kind, signed, M, K, N, seed):
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, signed)
    A = rng.integers(0, 256, (M, K)).astype(np.uint8)
    B = rng.integers(0, 256, (K, N)).astype(np.uint8)
    ref = ak.lut_gemm_reference(A, B, (t, signed))
    brute = t.astype(np.int64)[A[:, :, None], B[None, :, :]].sum(axis=1)
    assert np.array_equal(ref, brute)
    for path, kw in variants_for(t, signed):
        assert np.array_equal(ak.PreparedGemm(B, (t, signed), path, **kw)(A), ref), (path, kw)


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["trunc", "random"]), M=st.integers(64, 150), K8=st.integers(1, 20),
       N=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_lookup_with_regrouped_codes(kind, M, K8, N, seed):
    """GEMM lookups with M >= 64 and K % 8 == 0 read codes regrouped per eight k."""
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, False)
    A = rng.integers(0, 256, (M, 8 * K8)).astype(np.uint8)
    B = rng.integers(0, 256, (8 * K8, N)).astype(np.uint8)
    ref = ak.lut_gemm_reference(A, B, (t, False))
    for path, kw in variants_for(t, False):
        if path == "lookup":
            assert np.array_equal(ak.PreparedGemm(B, (t, False), path, **kw)(A), ref), kw


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["trunc", "random", "exact"]), signed=st.booleans(), M=st.integers(1, 150),
       K=st.integers(1, 80), n32=st.integers(1, 3), conv=st.booleans(), seed=st.integers(0, 2**31))
def test_lookup_with_32_column_blocks(kind, signed, M, K, n32, conv, seed):
    """Layers with N % 32 == 0 use 32-column lookup blocks (one 64-byte int16 row per code):
    int16 and int32 sums, row-major and regrouped codes, direct convolution output."""
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, signed)
    N = 32 * n32
    assert ak._lookup_block(N) == 32
    m = (t, signed)
    if conv:
        C, H = int(rng.integers(1, 9)), int(rng.integers(3, 9))
        x = rng.integers(0, 256, (2, C, H, H)).astype(np.uint8)
        w = rng.integers(0, 256, (N, C, 3, 3)).astype(np.uint8)
        ref = ak.lut_conv2d_reference(x, w, m, 1, 1, 1, 1, 7)
        for kw in ({}, {"lookup_variant": "wide"}):
            assert np.array_equal(ak.PreparedConv2d(w, m, 1, 1, path="lookup", **kw)(x, 7), ref), kw
        return
    A = rng.integers(0, 256, (M, 8 * K if M >= 64 else K)).astype(np.uint8)  # M >= 64: regrouped codes
    B = rng.integers(0, 256, (A.shape[1], N)).astype(np.uint8)
    ref = ak.lut_gemm_reference(A, B, m)
    for kw in ({}, {"lookup_variant": "wide"}):
        assert np.array_equal(ak.PreparedGemm(B, m, "lookup", **kw)(A), ref), kw


_r = np.random.default_rng(77)
_BIG_TABLES = (np.multiply.outer(_r.integers(-1024, 1025, 256), _r.integers(-1024, 1025, 256)),  # |uv| ~ 2^20
               np.multiply.outer(_r.integers(-40000, 40001, 256), _r.integers(-40000, 40001, 256)))  # ~ 2^30


@settings(max_examples=20, deadline=None)
@given(M=st.integers(1, 20), K=st.integers(1, 60), N=st.integers(1, 10), seed=st.integers(0, 2**31))
def test_multi_chunk_and_float64_factor_paths(M, K, N, seed):
    """Large factors: several exact float32 chunks, or the float64 fallback; int64 lookup sums."""
    rng = np.random.default_rng(seed)
    big, huge = _BIG_TABLES
    A = rng.integers(0, 256, (M, K)).astype(np.uint8)
    B = rng.integers(0, 256, (K, N)).astype(np.uint8)
    for t in (big, huge):
        m = (t, True)
        ref = ak.lut_gemm_reference(A, B, m)
        for path in ("lowrank", "lookup"):
            assert np.array_equal(ak.PreparedGemm(B, m, path)(A), ref), path


@settings(max_examples=6, deadline=None)
@given(C=st.integers(1, 6), k=st.integers(1, 3), O=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_large_factor_convolutions(C, k, O, seed):
    """Large factors in a convolution: several exact float32 plane groups for the direct
    convolution, or (too many groups, or a plane alone too large) the im2col + BLAS path."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (2, C, 5, 6)).astype(np.uint8)
    w = rng.integers(0, 256, (O, C, k, k)).astype(np.uint8)
    for t in _BIG_TABLES:
        m = (t, True)
        ref = ak.lut_conv2d_reference(x, w, m, 1, 1, 1, 1, 3)
        for kw in ({}, {"conv_backend": "blas"}, {"conv_layout": "nhwc"}, {"conv_layout": "nchw"}):
            assert np.array_equal(ak.PreparedConv2d(w, m, 1, 1, path="lowrank", **kw)(x, 3), ref), kw
        # int32 lookup sums would overflow for the ~2^30 table: K-ranges summed in int64
        assert np.array_equal(ak.PreparedConv2d(w, m, 1, 1, path="lookup")(x, 3), ref)


def test_direct_convolution_layout_is_timed_once_and_reported(monkeypatch):
    """conv_layout="auto" times both plane layouts on the first call of a geometry, keeps the
    faster for later calls (any batch size, any layer of that geometry), and reports it; bad
    pins raise."""
    if ak._torch_conv() is None:
        pytest.skip("torch missing")
    monkeypatch.setattr(ak, "_CONV_LAYOUTS", {})
    rng = np.random.default_rng(3)
    m = (perforated(1, 2, False), False)
    w = rng.integers(0, 256, (5, 3, 3, 3)).astype(np.uint8)
    layer = ak.PreparedConv2d(w, m, 1, 1, path="bitplane")  # (auto might time lookup against it)
    calls = []
    inner = ak.PreparedGemm._run_conv_in
    monkeypatch.setattr(ak.PreparedGemm, "_run_conv_in", lambda self, lay, *a: calls.append(lay if self is layer.gemms[0] else "other:" + lay) or inner(self, lay, *a))
    for bn in (2, 2, 3):
        x = rng.integers(0, 256, (bn, 3, 6, 7)).astype(np.uint8)
        assert np.array_equal(layer(x, 9), ak.lut_conv2d_reference(x, w, m, 1, 1, 1, 1, 9))
        epi = ak.Epilogue(scale=np.linspace(0.5, 1.0, 5), bias=np.arange(5.0), za=9, zw=np.full(5, 128))
        pinned = ak.PreparedConv2d(w, m, 1, 1, conv_layout="nhwc")  # (held to the reference by the epilogue test)
        assert np.array_equal(layer(x, 9, epi), pinned(x, 9, epi))
    chosen = layer.describe()["conv_layout"]
    assert list(ak._CONV_LAYOUTS.values()) == [chosen] and chosen in ("nhwc", "nchw")
    auto = [c for c in calls if not c.startswith("other")]
    # 4 timing rounds, then one more run unless the last (NCHW) one was kept; 5 later calls
    assert auto[:8] == ["nhwc", "nchw"] * 4 and auto[8:] == [chosen] * (6 - (chosen == "nchw"))
    assert layer.describe()["path"] == "bitplane"
    other = ak.PreparedConv2d(rng.integers(0, 256, (5, 3, 3, 3)).astype(np.uint8), m, 1, 1, path="bitplane")
    n = len(calls)
    other(x, 9)
    assert calls[n:] == ["other:" + chosen]  # same geometry, other weights: no new timing
    with pytest.raises(ValueError, match="conv_layout"):
        ak.PreparedConv2d(w, m, conv_layout="nhcw")


def test_close_conv_paths_are_timed_once_per_geometry(monkeypatch):
    """path="auto": a convolution whose lookup and direct-convolution costs are modelled close
    runs both once per layer geometry and table kind, keeps the faster (reported with both
    times), and later layers of that shape reuse the choice untimed; pinned paths never time."""
    if ak._torch_conv() is None:
        pytest.skip("torch missing")
    monkeypatch.setattr(ak, "_CONV_PATHS", {})
    monkeypatch.setattr(ak, "CONV_PATH_TIMING_BAND", 1e9)  # (any factored table is "close")
    rng = np.random.default_rng(5)
    m = (perforated(1, 2, False), False)
    x = rng.integers(0, 256, (2, 3, 9, 9)).astype(np.uint8)
    calls = []
    inner = ak.PreparedGemm.run_patches
    monkeypatch.setattr(ak.PreparedGemm, "run_patches", lambda self, *a, **k: calls.append(1) or inner(self, *a, **k))
    w = rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    layer = ak.PreparedConv2d(w, m, 1, 1)
    assert np.array_equal(layer(x, 7), ak.lut_conv2d_reference(x, w, m, 1, 1, 1, 1, 7))
    d = layer.describe()
    assert "timed: lookup" in d["reason"] and d["path"] in ("lookup", "bitplane")
    assert len(calls) == 1 + 8 and len(ak._CONV_PATHS) == 1  # the call, and 4 rounds of both paths
    other = ak.PreparedConv2d(rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8), m, 1, 1)
    calls.clear()
    other(x, 7)
    assert len(calls) == 1 and other.describe()["path"] == d["path"] and "timed" in other.describe()["reason"]
    calls.clear()
    ak.PreparedConv2d(w, m, 1, 1, path="lookup")(x, 7)
    assert len(calls) == 1
    monkeypatch.setattr(ak, "CONV_PATH_TIMING_BAND", 0.5)  # (nothing is close: the model decides)
    far = ak.PreparedConv2d(w, m, 2, 1)
    far(x, 7)
    assert "timed" not in far.describe()["reason"]


def test_narrow_lookup_is_offered_for_short_range_tables():
    t6 = truncated(6)
    off, g, rows = ak.narrow_lut(t6)
    assert g == 64 and rows * max(abs((t6.astype(np.int64) - off) // g).max(), 1) <= 32767 and rows % 4 == 0
    assert ak.narrow_lut(exact_table(False)) is None
    assert ak.narrow_lut(np.random.default_rng(0).integers(0, 65536, (256, 256))) is None
    with pytest.raises(ValueError, match="too wide"):
        ak.PreparedGemm(np.zeros((3, 2), np.uint8), (exact_table(False).astype(np.uint16), False), "lookup",
                        lookup_variant="narrow")


@SETTINGS
@given(L=st.integers(1, 60), N=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_greedy_chunks_respect_the_limit(L, N, seed):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 1000, (L, N))
    lim = int(rng.integers(1000, 20000))
    ch = ak._greedy_chunks(c, lim)
    assert ch[0][0] == 0 and ch[-1][1] == L and all(a[1] == b[0] for a, b in zip(ch, ch[1:]))
    assert all(c[a:b].sum(axis=0).max() <= lim for a, b in ch)
    assert ak._greedy_chunks(c, 500) is None or c.max() <= 500


def _codes_of_groups(src, xbase, groups, order=None):
    """The (M, K) code matrix the lookup kernel reads: group (offset, r0, n) of row m is the
    n bytes at xbase[m] + offset, feeding table rows r0 .. r0 + n - 1, row r holding column
    order[r] (None: r; -1: a zero row, whose code is read and ignored)."""
    rows = int(groups[:, 2].sum())
    order = np.arange(rows) if order is None else np.asarray(order)
    assert order.shape == (rows,)
    A = np.full((xbase.shape[0], rows), -1, np.int64)
    for off, r0, n in groups:
        assert n in (1, 4, 8)
        for i in range(n):
            assert (A[:, r0 + i] == -1).all()  # every table row fed once
            A[:, r0 + i] = src[xbase + off + i]
    real = order >= 0
    assert sorted(order[real]) == list(range(int(real.sum())))  # every column once
    out = np.empty((xbase.shape[0], int(real.sum())), np.int64)
    out[:, order[real]] = A[:, real]
    return out


def test_implicit_im2col_addresses_the_patches():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (2, 3, 7, 6)).astype(np.uint8)
    for (kh, kw), s, d, p in (((3, 2), (2, 1), (1, 2), (1, 2)), ((1, 1), (1, 1), (1, 1), (0, 0)),
                              ((3, 3), (1, 2), (1, 1), (1, 1))):
        xp = ak.pad_codes(x, p, 9)
        Ho, Wo = ak.conv_output_size(7, 6, kh, kw, s, p, d)
        nhwc = np.ascontiguousarray(xp.transpose(0, 2, 3, 1))
        out = np.empty_like(nhwc)
        assert np.array_equal(ak._pad_codes_nhwc(x, p[0], p[1], np.uint8(9), out), nhwc)
        Bn, Hp, Wp, C = nhwc.shape
        xb, groups, order = ak.lookup_layout_conv(Bn, C, Hp, Wp, kh, kw, *s, *d, Ho, Wo)
        A = _codes_of_groups(np.concatenate([nhwc.reshape(-1), np.zeros(8, np.uint8)]), xb, groups, order)
        assert np.array_equal(A, ak.im2col(x, kh, kw, s, p, d, 9))
        if d[1] == 1 and kw * C >= 8:
            assert (groups[:, 2] == 8).any()  # packed loads are used


@pytest.mark.parametrize("M,K", [(1, 1), (3, 7), (5, 8), (2, 13), (4, 29), (3, 3), (2, 6), (2, 30)])
def test_gemm_layouts_address_every_code(M, K):
    A = np.random.default_rng(K).integers(0, 256, (M, K)).astype(np.uint8)
    xb, groups, order = ak.lookup_layout_gemm(M, K, False)
    src = np.concatenate([A.reshape(-1), np.zeros(8, np.uint8)])  # the 8 readable bytes past the end
    assert np.array_equal(_codes_of_groups(src, xb, groups, order), A)
    if K % 8 == 0:
        xb, groups, order = ak.lookup_layout_gemm(M, K, True)
        assert order is None
        src = np.ascontiguousarray(A.view(np.uint64).T).reshape(-1).view(np.uint8)
        assert np.array_equal(_codes_of_groups(src, xb, groups), A)
    else:
        with pytest.raises(ValueError, match="K % 8"):
            ak.lookup_layout_gemm(M, K, True)


def test_lookup_rows_are_cache_line_aligned():
    assert ak.aligned_empty((3, 5, 7), np.int16).ctypes.data % 64 == 0
    layer = ak.PreparedGemm(np.zeros((9, 3), np.uint8), (truncated(6), False), "lookup")
    layer(np.zeros((2, 9), np.uint8))
    assert all(r["G"].ctypes.data % 64 == 0 for r in layer._rows.values())


# -- convolution -----------------------------------------------------------------------------
@SETTINGS
@given(kind=st.sampled_from(KINDS), signed=st.booleans(), B=st.integers(1, 2), C=st.integers(1, 4),
       H=st.integers(3, 9), W=st.integers(3, 9), O=st.integers(1, 5), k=st.integers(1, 3),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       pad_code=st.integers(0, 255), seed=st.integers(0, 2**31))
# regression: the lookup kernel's direct conv output took its column count from the
# placeholder matrix (N = 1), leaving every channel but the first unwritten
@example(kind="exact", signed=False, B=1, C=1, H=3, W=3, O=2, k=1, stride=1, pad=0, dil=1, groups=1,
         pad_code=0, seed=0)
def test_conv_every_path_matches_reference(kind, signed, B, C, H, W, O, k, stride, pad, dil, groups, pad_code, seed):
    if C % groups or O % groups or H + 2 * pad < dil * (k - 1) + 1 or W + 2 * pad < dil * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, signed)
    x = rng.integers(0, 256, (B, C, H, W)).astype(np.uint8)
    w = rng.integers(0, 256, (O, C // groups, k, k)).astype(np.uint8)
    m = (t, signed)
    ref = ak.lut_conv2d_reference(x, w, m, stride, pad, dil, groups, pad_code)
    for path, kw in variants_for(t, signed):
        got = ak.PreparedConv2d(w, m, stride, pad, dil, groups, path, **kw)(x, pad_code)
        assert np.array_equal(got, ref), (path, kw)
    assert np.array_equal(ak.ax_conv2d(x, w, m, stride, pad, dil, groups, pad_code), ref)
    # im2col + reference GEMM agrees with the direct convolution (groups=1 view)
    if groups == 1:
        A = ak.im2col(x, k, k, stride, pad, dil, pad_code)
        g = ak.lut_gemm_reference(A, w.reshape(O, -1).T, m)
        assert np.array_equal(g.reshape(B, ref.shape[2], ref.shape[3], O).transpose(0, 3, 1, 2), ref)


@SETTINGS
@given(B=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 8), W=st.integers(1, 8), kh=st.integers(1, 4),
       kw=st.integers(1, 4), stride=st.integers(1, 3), dil=st.integers(1, 2), ph=st.integers(0, 3),
       pw=st.integers(0, 3), pad=st.integers(0, 255), seed=st.integers(0, 2**31))
def test_patch_sums_equal_im2col_row_sums(B, C, H, W, kh, kw, stride, dil, ph, pw, pad, seed):
    """The summed-area shortcut (interior and edge columns, and the dilated loop) equals the row
    sums of the patches."""
    if H + 2 * ph < dil * (kh - 1) + 1 or W + 2 * pw < dil * (kw - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (B, C, H, W)).astype(np.uint8)
    Ho, Wo = ak.conv_output_size(H, W, kh, kw, stride, (ph, pw), dil)
    A = ak.im2col(x, kh, kw, stride, (ph, pw), dil, pad)
    for lut in (rng.integers(-1000, 1000, 256).astype(np.int64), ak._IDENTITY):  # (identity: codes read directly)
        got = ak._patch_sums(x, ph, pw, pad, lut, kh, kw, stride, stride, dil, dil, Ho, Wo)
        assert np.array_equal(got, lut[A].sum(axis=1))


@SETTINGS
@given(kind=st.sampled_from(KINDS), affine=st.booleans(), per_channel=st.booleans(), O=st.sampled_from([4, 32]),
       seed=st.integers(0, 2**31))
def test_fused_epilogue_equals_integer_then_dequantize(kind, affine, per_channel, O, seed):
    """(O = 32: 32-column lookup blocks write the float output directly.)"""
    rng = np.random.default_rng(seed)
    signed = not affine
    t = table_for(kind, rng, signed)
    m = (t, signed)
    x = rng.integers(0, 256, (2, 3, 6, 5)).astype(np.uint8)
    w = rng.integers(0, 256, (O, 3, 3, 3)).astype(np.uint8)
    scale = rng.uniform(1e-4, 1e-2, O)
    bias = rng.normal(size=O)
    za = int(rng.integers(0, 256)) if affine else 0
    zw = (rng.integers(0, 256, O) if per_channel else np.full(O, rng.integers(0, 256))) if affine else None
    ep = ak.Epilogue(scale, bias, za, zw)
    acc = ak.lut_conv2d_reference(x, w, m, 1, 1, 1, 1, za)
    if affine:
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=za).astype(np.int64)
        rs = np.zeros(acc.shape[:1] + acc.shape[2:], np.int64)
        for i in range(3):
            for j in range(3):
                rs += xp[:, :, i:i + 6, j:j + 5].sum(axis=1)
        wsum = w.reshape(O, -1).astype(np.int64).sum(axis=1)
        zw4 = zw.reshape(1, O, 1, 1)
        acc = acc - zw4 * rs[:, None] - za * wsum.reshape(1, O, 1, 1) + 27 * za * zw4
    want = ak.dequantize_acc(np.moveaxis(acc, 1, -1), scale, bias)
    for path, kw in variants_for(t, signed):
        got = ak.PreparedConv2d(w, m, 1, 1, 1, 1, path, **kw)(x, za, ep)
        assert np.array_equal(np.moveaxis(got, 1, -1), want), (path, kw)
    # the GEMM view of the same layer (one image, P = Ho * Wo rows)
    A = ak.im2col(x[:1], 3, 3, 1, 1, 1, za)
    out = np.empty((1, O, 30), np.float32)
    for path, kw in variants_for(t, signed):
        got = ak.PreparedGemm(w.reshape(O, -1).T, m, path, **kw)(A, ep, out=out)
        assert np.array_equal(np.moveaxis(got.reshape(1, O, 6, 5), 1, -1), want[:1]), (path, kw)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(KINDS), signed=st.booleans(), B=st.integers(1, 3), C=st.integers(1, 3),
       H=st.integers(2, 12), W=st.integers(2, 12), O=st.integers(1, 8), kh=st.integers(1, 6), kw=st.integers(2, 7),
       sh=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3), pad_code=st.integers(0, 255),
       variant=st.sampled_from(["auto", "narrow", "wide"]), float_out=st.booleans(), seed=st.integers(0, 2**31))
def test_row_window_lookup_matches_reference(kind, signed, B, C, H, W, O, kh, kw, sh, ph, pw, pad_code, variant,
                                             float_out, seed):
    """The row-window lookup (few output channels, unit column stride) against the reference,
    with int64 and float32 (affine epilogue) outputs and small batch tiles."""
    if H + 2 * ph < kh or W + 2 * pw < kw or ak.window_fits(O, kh, kw, sh, 1, 1, 1) is not None:
        return
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, signed)
    m = (t, signed)
    if variant == "narrow" and ak.analyze(m).narrow is None:
        variant = "wide"
    x = rng.integers(0, 256, (B, C, H, W)).astype(np.uint8)
    w = rng.integers(0, 256, (O, C, kh, kw)).astype(np.uint8)
    layer = ak.PreparedConv2d(w, m, (sh, 1), (ph, pw), path="lookup", lookup_variant=variant,
                              lookup_layout="window")
    layer.TILE_BYTES = int(rng.integers(1, 4000))  # several batch tiles (row0 > 0)
    ref = ak.lut_conv2d_reference(x, w, m, (sh, 1), (ph, pw), pad_code=pad_code)
    if not float_out:
        assert np.array_equal(layer(x, pad_code), ref)
        assert layer.describe()["lookup_layout"] == "window"
        return
    scale = rng.uniform(1e-4, 1e-2, O)
    affine = not signed  # (signed: the symmetric scheme, no zero-points)
    ep = ak.Epilogue(scale, rng.normal(size=O), pad_code if affine else 0, rng.integers(0, 256, O) if affine else None)
    pat = ak.PreparedConv2d(w, m, (sh, 1), (ph, pw), path="lookup", lookup_variant=variant, lookup_layout="patches")
    got, want = layer(x, pad_code, ep), pat(x, pad_code, ep)
    assert np.array_equal(got, want)  # (the patch layout's epilogue is held to the integers above)


def test_row_window_is_chosen_reported_and_refused_where_it_does_not_fit():
    m = (exact_table(False), False)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 1, 12, 12)).astype(np.uint8)
    w = rng.integers(0, 256, (6, 1, 5, 5)).astype(np.uint8)
    layer = ak.PreparedConv2d(w, m, path="lookup")
    assert np.array_equal(layer(x), ak.lut_conv2d_reference(x, w, m))
    assert layer.describe()["lookup_layout"] == "window"
    wide = ak.PreparedConv2d(rng.integers(0, 256, (16, 1, 5, 5)).astype(np.uint8), m, path="lookup")
    wide(x)
    assert wide.describe()["lookup_layout"] == "patches"
    with pytest.raises(ValueError, match="column stride"):
        ak.PreparedConv2d(w, m, stride=2, path="lookup", lookup_layout="window")(x)
    with pytest.raises(ValueError, match="lookup_layout"):
        ak.PreparedConv2d(w, m, lookup_layout="rows")


# -- threads, errors -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["exact", "lowrank", "trunc", "random"])
def test_results_do_not_depend_on_thread_count(kind):
    rng = np.random.default_rng(7)
    t = table_for(kind, rng, False)
    m = (t, False)
    A = rng.integers(0, 256, (700, 130)).astype(np.uint8)
    B = rng.integers(0, 256, (130, 70)).astype(np.uint8)
    x = rng.integers(0, 256, (3, 4, 12, 12)).astype(np.uint8)
    w = rng.integers(0, 256, (40, 4, 3, 3)).astype(np.uint8)
    w6 = rng.integers(0, 256, (6, 4, 5, 5)).astype(np.uint8)  # (row windows)
    old = numba.get_num_threads()
    results = []
    variants = variants_for(t, False)
    try:
        for nt in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(nt)
            r = [ak.PreparedGemm(B, m, p, **kw)(A) for p, kw in variants]
            r += [ak.PreparedConv2d(w, m, 1, 1, path=p, **kw)(x, 5) for p, kw in variants]
            results.append(r + [ak.PreparedConv2d(w6, m, 1, 2, path="lookup")(x, 5)])
    finally:
        numba.set_num_threads(old)
    for a, b in zip(*results):
        assert np.array_equal(a, b)
    # and every result is the reference's (40 output channels: several lookup column blocks)
    ref_g = ak.lut_gemm_reference(A, B, m)
    ref_c = ak.lut_conv2d_reference(x, w, m, 1, 1, 1, 1, 5)
    for got, (p, kw) in zip(results[0], variants + variants):
        assert np.array_equal(got, ref_g if got.ndim == 2 else ref_c), (p, kw)
    assert np.array_equal(results[0][-1], ak.lut_conv2d_reference(x, w6, m, 1, 2, 1, 1, 5))


def test_errors_name_the_problem():
    t = exact_table(False).astype(np.uint16)
    with pytest.raises(ValueError, match="256x256"):
        ak.as_multiplier((t[:10], False))
    with pytest.raises(ValueError, match="shapes do not match"):
        ak.ax_gemm(np.zeros((2, 3), np.uint8), np.zeros((4, 2), np.uint8), (t, False))
    with pytest.raises(ValueError, match="8-bit codes"):
        ak.ax_gemm(np.zeros((2, 3), np.int32), np.zeros((3, 2), np.uint8), (t, False))
    with pytest.raises(ValueError, match="path"):
        ak.PreparedGemm(np.zeros((3, 2), np.uint8), (t, False), "fastest")
    with pytest.raises(ValueError, match="admits path 'exact'"):
        ak.PreparedGemm(np.zeros((3, 2), np.uint8), (t, False), "bitplane")
    with pytest.raises(ValueError, match="channels"):
        ak.ax_conv2d(np.zeros((1, 3, 5, 5), np.uint8), np.zeros((2, 2, 3, 3), np.uint8), (t, False))


def test_choose_path_reports_model():
    an = ak.analyze((exact_table(False).astype(np.uint16), False))
    path, why = ak.choose_path(an, 1024, 1152, 128)
    assert path in ("exact", "exact/int8") and "model" in why
    assert ak.choose_path(an, 1024, 1152, 128, int8=False)[0] == "exact"
    rnd = ak.analyze((np.random.default_rng(0).integers(0, 65536, (256, 256)).astype(np.uint16), False))
    assert ak.choose_path(rnd, 1024, 1152, 128)[0] == "lookup"


def test_work_buffers_are_reused_across_tile_shapes():
    """A call's full and last batch tiles alternate shapes: the work array of a name is one
    buffer, grown to the largest size asked and viewed at each shape (64-byte aligned)."""
    g = ak.PreparedGemm(np.zeros((9, 3), np.uint8), (truncated(6), False))
    big = g._buffer("t", (366, 6, 7), np.float32)
    small = g._buffer("t", (134, 6, 7), np.float32)
    assert small.shape == (134, 6, 7) and small.dtype == np.float32 and np.shares_memory(big, small)
    assert big.ctypes.data % 64 == 0 and g._buffer("t", (366, 6, 7), np.float32).ctypes.data == big.ctypes.data
    assert g._buffer("t", (400, 6, 7), np.int64).shape == (400, 6, 7)  # grows
    assert g._buffer("e", (0, 5), np.int64).shape == (0, 5)


def test_lookup_without_packed_loads_is_still_exact(monkeypatch):
    """The big-endian fallback (one code per group) gives the same sums."""
    rng = np.random.default_rng(11)
    t = truncated(6)
    A = rng.integers(0, 256, (70, 24)).astype(np.uint8)
    B = rng.integers(0, 256, (24, 5)).astype(np.uint8)
    x = rng.integers(0, 256, (2, 3, 6, 5)).astype(np.uint8)
    w = rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    monkeypatch.setattr(ak, "_PACKED", False)
    assert (ak.lookup_layout_gemm(4, 24, False)[1][:, 2] == 1).all()
    assert np.array_equal(ak.PreparedGemm(B, (t, False), "lookup")(A), ak.lut_gemm_reference(A, B, (t, False)))
    got = ak.PreparedConv2d(w, (t, False), 1, 1, path="lookup")(x, 3)
    assert np.array_equal(got, ak.lut_conv2d_reference(x, w, (t, False), 1, 1, 1, 1, 3))


def test_run_tails_take_padded_groups():
    """Six or seven codes left after the groups of eight take one padded group of eight, three
    a padded four (zero table rows under the codes past the run); 1, 2, 4, 5 are not padded."""
    for n, sizes, zeros in ((30, [8, 8, 8, 8], 2), (15, [8, 8], 1), (11, [8, 4], 1), (13, [8, 4, 1], 0),
                            (10, [8, 1, 1], 0), (12, [8, 4], 0), (9, [8, 1], 0)):
        groups, rows = ak._runs_to_groups([(5, 0, n)])
        assert list(groups[:, 2]) == sizes and int((rows < 0).sum()) == zeros, n
        assert list(groups[:, 0]) == [5 + int(o) for o in np.cumsum([0] + sizes[:-1])] or zeros == 0
    _, groups, order = ak.lookup_layout_conv(2, 6, 14, 14, 5, 5, 1, 1, 1, 1, 10, 10)  # LeNet-5 conv2
    assert list(groups[:, 2]) == [8] * 20 and int((order < 0).sum()) == 10


@SETTINGS
@given(kind=st.sampled_from(["trunc", "random"]), signed=st.booleans(), C=st.integers(1, 8),
       k=st.integers(1, 5), n=st.integers(1, 40), conv=st.booleans(), seed=st.integers(0, 2**31))
def test_padded_groups_are_exact(kind, signed, C, k, n, conv, seed):
    """Lookups with padded tail groups equal the reference and the unpadded cover (convolutions
    whose kernel rows hold KW * C codes, GEMMs with any K; int16 and int32 sums, float output)."""
    rng = np.random.default_rng(seed)
    m = (table_for(kind, rng, signed), signed)
    H, K, M = k + int(rng.integers(0, 4)), C * k + int(rng.integers(0, 8)), int(rng.integers(1, 40))
    got = {}
    for pad in (True, False):
        ak.LOOKUP_PAD_RUNS = pad
        try:
            if conv:
                x = np.random.default_rng(seed).integers(0, 256, (2, C, H, H + 1)).astype(np.uint8)
                w = np.random.default_rng(seed + 1).integers(0, 256, (n, C, k, k)).astype(np.uint8)
                ref = ak.lut_conv2d_reference(x, w, m, 1, k // 2, 1, 1, 3)
                outs = [ak.PreparedConv2d(w, m, 1, k // 2, path="lookup", **kw)(x, 3)
                        for kw in ({}, {"lookup_variant": "wide"})]
            else:
                A = np.random.default_rng(seed).integers(0, 256, (M, K)).astype(np.uint8)
                B = np.random.default_rng(seed + 1).integers(0, 256, (K, n)).astype(np.uint8)
                ref = ak.lut_gemm_reference(A, B, m)
                outs = [ak.PreparedGemm(B, m, "lookup", **kw)(A) for kw in ({}, {"lookup_variant": "wide"})]
        finally:
            ak.LOOKUP_PAD_RUNS = True
        for o in outs:
            assert np.array_equal(o, ref), pad
        got[pad] = outs[0]
    assert np.array_equal(got[True], got[False])


# -- int8 backend ----------------------------------------------------------------------------
needs_int8 = pytest.mark.skipif(ak.int8_gemm() is None, reason="torch._int_mm missing or inexact on this CPU")


@SETTINGS
@given(kind=st.sampled_from(["exact", "trunc", "perf", "lowrank"]), signed=st.booleans(), seed=st.integers(0, 2**31))
def test_int8_variant_represents_the_table(kind, signed, seed):
    """Shifted, rebalanced int8 factors plus their linear terms rebuild the table exactly."""
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, signed)
    an = ak.analyze((t, signed))
    v = ak._int8_variant(an)
    if v is None:
        return
    U, V, c, al, be = v
    assert U.min() >= -128 and U.max() <= 127 and V.min() >= -128 and V.max() <= 127
    assert np.array_equal(c + al[:, None] + be[None, :] + U.T @ V, t.astype(np.int64))


def test_int8_variant_covers_the_partial_product_designs():
    """Exact, perforated and truncated tables (factors up to 2^14 before rebalancing) fit int8."""
    for t, signed in ((exact_table(False), False), (exact_table(True), True), (truncated(6), False),
                      (truncated(8, correction=100), False), (perforated(1, 2, False), False)):
        assert ak._int8_variant(ak.analyze((t, signed))) is not None


def test_bit_fields_describe_the_partial_product_factors():
    """Every int8 factor of the partial-product designs is a scaled bit field of the code."""
    a = np.arange(256)
    for t, signed in ((exact_table(False), False), (exact_table(True), True), (truncated(6), False),
                      (truncated(8, correction=100), False), (perforated(1, 2, False), False)):
        U = ak._int8_variant(ak.analyze((t, signed)))[0]
        f = ak.bit_fields(U)
        assert f is not None and f.shape == (U.shape[0], 5)
        for (flip, sh, mask, s, o), u in zip(f, U):
            assert np.array_equal(s * (((a ^ flip) >> sh) & mask) + o, u)
    assert ak.bit_fields(np.random.default_rng(0).integers(-100, 100, (1, 256))) is None


@SETTINGS
@given(kind=st.sampled_from(["exact", "trunc", "perf"]), signed=st.booleans(), seed=st.integers(0, 2**31),
       m=st.integers(1, 40), k=st.integers(1, 70), linear=st.booleans())
def test_field_conversion_equals_the_lookup_conversion(kind, signed, seed, m, k, linear):
    """The arithmetic (bit-field) int8 conversion writes the same operand and sums as the
    table lookup, with alpha summed from the factors (linear) or looked up."""
    rng = np.random.default_rng(seed)
    t = table_for(kind, rng, signed)
    v = ak._int8_variant(ak.analyze((t, signed)))
    if v is None:
        return
    U, _, _, al, _ = v
    fields = ak.bit_fields(U)
    if fields is None:
        return
    if not linear:
        al = al + rng.integers(-50, 50, 256)  # almost surely not a combination of the factors
    coef = ak.linear_in_fields(al, U)
    use_coef = coef is not None
    if use_coef:
        assert np.array_equal(U.T @ coef[:-1] + coef[-1], al)
    A = rng.integers(0, 256, (m, k)).astype(np.uint8)
    U8 = np.ascontiguousarray(U.astype(np.int8))
    want = ak._convert(A, U8, al, True, True, np.empty((m, U.shape[0] * k), np.int8))
    got = ak._convert_fields_i8(A, fields, np.zeros(U.shape[0] + 1, np.int64) if coef is None else coef,
                                use_coef, al, True, True, np.empty((m, U.shape[0] * k), np.int8))
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


@needs_int8
def test_int8_backend_long_reductions_are_exact():
    """Worst-case operands over a long reduction: int32 chunks summed in int64 where needed."""
    rng = np.random.default_rng(3)
    for t, signed in ((exact_table(False), False), (exact_table(True), True), (truncated(6), False)):
        m = (t, signed)
        for A, B in ((np.full((3, 20000), 255, np.uint8), np.full((20000, 2), 255, np.uint8)),
                     (np.full((3, 20000), 128, np.uint8), np.full((20000, 2), 128, np.uint8)),
                     (rng.integers(0, 256, (5, 9000)).astype(np.uint8), rng.integers(0, 256, (9000, 3)).astype(np.uint8))):
            g = ak.PreparedGemm(B, m, ak.analyze(m).kind, factored_backend="int8")
            assert np.array_equal(g(A), ak.lut_gemm_reference(A, B, m))
            assert g.describe()["factored_backend"] == "int8"


@needs_int8
def test_int8_backend_is_reported_and_pinnable():
    t = exact_table(False)
    rng = np.random.default_rng(0)
    A = rng.integers(0, 256, (300, 64)).astype(np.uint8)
    B = rng.integers(0, 256, (64, 32)).astype(np.uint8)
    assert ak.choose_path(ak.analyze((t, False)), 1024, 1152, 128)[0] == "exact/int8"
    g = ak.PreparedGemm(B, (t, False))
    g(A)
    assert g.describe()["path"] == "exact" and g.describe()["factored_backend"] == "int8"
    g = ak.PreparedGemm(B, (t, False), factored_backend="float")
    g(A)
    assert g.describe()["factored_backend"] == "float"
    with pytest.raises(ValueError, match="factored_backend must be"):
        ak.PreparedGemm(B, (t, False), factored_backend="vnni")
    rnd = np.random.default_rng(0).integers(0, 65536, (256, 256)).astype(np.uint16)
    with pytest.raises(ValueError, match="do not fit int8"):
        ak.PreparedGemm(B, (rnd, False), factored_backend="int8")


def test_int8_backend_off_without_a_passing_selftest(monkeypatch):
    """$COSIM_INT8_GEMM=0 (or a failed self-test) leaves only the float backend."""
    monkeypatch.setattr(ak, "_INT8_STATE", {})
    monkeypatch.setenv("COSIM_INT8_GEMM", "0")
    assert ak.int8_gemm() is None
    an = ak.analyze((exact_table(False), False))
    assert "exact/int8" not in ak.estimate_costs(an, 100, 100, 16)
    with pytest.raises(ValueError, match="_int_mm"):
        ak.PreparedGemm(np.zeros((4, 4), np.uint8), (exact_table(False), False), factored_backend="int8")
    monkeypatch.setattr(ak, "_INT8_STATE", {})
    monkeypatch.delenv("COSIM_INT8_GEMM")
    monkeypatch.setattr(ak, "_int8_selftest", lambda torch: False)
    assert ak.int8_gemm() is None
