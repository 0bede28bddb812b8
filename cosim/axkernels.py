"""LUT-exact approximate GEMM and convolution on 8-bit codes (Numba + BLAS).

Semantics (the reference): C[m, n] = sum_k T[A[m, k], B[k, n]] with exact integer sums, where
T is a multiplier's 256x256 table indexed [a_code, b_code] (a = activation, port A; b = weight,
port B) and codes are 8-bit patterns (uint8; for signed multipliers code c means int8(c)).
A convolution is the same GEMM over im2col patches; padded positions carry `pad_code` (the
code of real zero) and go through the multiplier like every other operand, as they do in an
array that multiplies the padded ifmap.

Fast paths, each bit-exact against the reference (tests/cosim/test_axkernels.py):

- ``exact``: T is the exact product table -> one float32 BLAS GEMM on operand values.
- ``bitplane``: T is bilinear in the operand bits (truncation, perforation, broken array, ...,
  with constants and linear terms): T[a,b] = c + alpha[a] + beta[b] + bits(a)^T W bits(b),
  found from the table alone by a Moebius transform; an integer factorization W = P Q of rank r
  gives r bit-plane products, run as one BLAS GEMM over the concatenated reduction axis.
- ``lowrank``: T minus its first row and column (T' = T - T[:,0] - T[0,:] + T[0,0], which
  leaves the minimal bilinear rank) has a small exact integer factorization T' = U V (lattice
  basis of its rows); same machinery as ``bitplane`` with looked-up operand factors.
- ``lookup``: everything else: a blocked lookup kernel over per-layer precomputed weight rows
  G[k, a, :] = T[a, B[k, :]] (the weights are fixed, so this is built once per layer): each
  (m, k) adds one contiguous row, k-blocked so the slab of rows stays in L2.

Why the BLAS paths are exact: every operand factor is an integer with |u| <= u_max, |v| <=
v_max, and the reduction axis is cut into chunks with sum(u_max * v_max) <= 2^24 per chunk.
Then every product and every partial sum, in any order, blocking or FMA contraction a BLAS may
use, is an integer of magnitude <= 2^24, which float32 represents exactly, so no rounding ever
happens; chunk results are summed exactly in float64 (< 2^53) and converted to int64.

The path is chosen per layer (`choose_path`) by a cost model whose constants were measured on
the development machine: factored paths cost ~rank BLAS GEMMs plus the operand conversion,
the lookup kernel a fixed time per (padded) MAC; `PreparedGemm.describe()` says which path a
layer took and why. Measured ratios against exact float32 torch: benchmarks/bench_kernels.py.

Every Numba kernel here is `parallel=True` over disjoint output rows or tiles with integer
arithmetic only, so results do not depend on the thread count.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numba
from numba import njit, prange, uint64

F32_EXACT = 2**24  # float32 represents every integer of magnitude <= 2^24
F64_EXACT = 2**53
PATHS = ("exact", "bitplane", "lowrank", "lookup")
MAX_FACTOR_RANK = 16  # factorization is not attempted beyond this bilinear rank

# Cost model for the automatic path choice (ns per multiply-accumulate, measured on the
# 2-core AMD EPYC (Zen 3) development machine, single thread; see benchmarks/bench_kernels.py).
# Only their ratios matter: factored paths cost ~rank BLAS GEMMs plus the operand conversion,
# the lookup kernel ~LUT_NS per MAC (padded to its column block).
GEMM_NS_PER_MAC = 0.05  # float32 BLAS incl. conversion; narrow layers count as N = 16
CONVERT_NS_PER_ELEM = 0.8  # patch gathering + factor conversion, per element and factor
LUT_NS_PER_MAC = 0.25  # lookup kernel, per MAC of the padded column block


# ----------------------------------------------------------------------------------------
# Multiplier normalisation
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MulTable:
    """A multiplier reduced to what the kernels need: table (int32), signedness, name, hash."""

    table: np.ndarray  # (256, 256) int32, read-only, indexed [a_code, b_code]
    signed: bool
    name: str
    sha256: str


def _table_hash(table: np.ndarray, signed: bool) -> str:
    h = hashlib.sha256(np.ascontiguousarray(table, dtype="<i4").tobytes())
    h.update(b"s" if signed else b"u")
    return h.hexdigest()


def as_multiplier(mult, signed: bool | None = None) -> MulTable:
    """Accept a Multiplier-like object (.table, .signed, .name), a (table, signed) pair, or a table."""
    if isinstance(mult, MulTable):
        return mult
    name = "table"
    if hasattr(mult, "table") and hasattr(mult, "signed"):
        table, sgn, name = mult.table, bool(mult.signed), str(getattr(mult, "name", "table"))
    elif isinstance(mult, tuple) and len(mult) == 2:
        table, sgn = mult
        sgn = bool(sgn)
    else:
        table, sgn = mult, signed
        if sgn is None:
            t = np.asarray(table)
            sgn = bool(t.dtype == np.int16)
    if signed is not None and bool(signed) != sgn:
        raise ValueError(f"multiplier {name!r}: signed={signed} contradicts its own signed={sgn}")
    t = np.asarray(table)
    if t.shape != (256, 256):
        raise ValueError(f"multiplier {name!r}: table must be 256x256, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"multiplier {name!r}: table must be integer, got dtype {t.dtype}")
    t64 = t.astype(np.int64)
    if t64.min() < -(2**31) or t64.max() >= 2**31:
        raise ValueError(f"multiplier {name!r}: table values must fit int32, got range "
                         f"[{t64.min()}, {t64.max()}]")
    t32 = np.ascontiguousarray(t64.astype(np.int32))
    t32.setflags(write=False)
    return MulTable(t32, sgn, name, _table_hash(t32, sgn))


def code_values(signed: bool) -> np.ndarray:
    """Integer value of every 8-bit code (int64, length 256)."""
    c = np.arange(256, dtype=np.int64)
    return np.where(c >= 128, c - 256, c) if signed else c


def exact_table(signed: bool) -> np.ndarray:
    """The exact product table (int64), indexed by codes."""
    v = code_values(signed)
    return np.multiply.outer(v, v)


# ----------------------------------------------------------------------------------------
# Table analysis: which fast path a table admits
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TableAnalysis:
    """How a table decomposes: T[a,b] = const + alpha[a] + beta[b] + sum_r U[r,a] * V[r,b]."""

    name: str
    signed: bool
    kind: str  # "exact" | "bitplane" | "lowrank" | "lookup"
    rank: int  # bilinear rank r of the factorization (-1 when not factored)
    const: int
    alpha: np.ndarray  # (256,) int64
    beta: np.ndarray  # (256,) int64
    U: np.ndarray  # (r, 256) int64, activation-side factors
    V: np.ndarray  # (r, 256) int64, weight-side factors
    table: np.ndarray = field(repr=False)  # (256, 256) int32
    error_rank: int = -1  # rank of T - exact (float estimate, for reports)
    note: str = ""

    @property
    def factored(self) -> bool:
        """True when a BLAS path (exact, bitplane, lowrank) is available."""
        return self.rank >= 0

    def u_max(self) -> np.ndarray:
        """max |U[r, a]| over all codes, per factor."""
        return np.abs(self.U).max(axis=1) if self.rank > 0 else np.zeros(0, np.int64)

    def v_max(self) -> np.ndarray:
        """max |V[r, b]| over all codes, per factor."""
        return np.abs(self.V).max(axis=1) if self.rank > 0 else np.zeros(0, np.int64)

    def describe(self) -> dict:
        """JSON-ready summary."""
        return {"name": self.name, "signed": self.signed, "kind": self.kind, "rank": self.rank,
                "error_rank": self.error_rank, "u_max": self.u_max().tolist(),
                "v_max": self.v_max().tolist(), "note": self.note}


def moebius(table: np.ndarray) -> np.ndarray:
    """Moebius (subset-difference) transform over the 8 a-bits and 8 b-bits of the code indices.

    Returns M with T[a, b] = sum over bit subsets sa of a and sb of b of M[sa, sb].
    """
    f = np.array(table, dtype=np.int64)
    for i in range(8):
        v = f.reshape(256 >> (i + 1), 2, 1 << i, 256)
        v[:, 1] -= v[:, 0]
    for j in range(8):
        v = f.reshape(256, 256 >> (j + 1), 2, 1 << j)
        v[:, :, 1] -= v[:, :, 0]
    return f


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def bilinear_bits(table: np.ndarray):
    """(const, alpha_bits[8], beta_bits[8], W[8,8]) if T is bilinear in the code bits, else None."""
    m = moebius(table)
    nz_a, nz_b = np.nonzero(m)
    if (_POPCOUNT[nz_a] > 1).any() or (_POPCOUNT[nz_b] > 1).any():
        return None
    p = [1 << i for i in range(8)]
    return int(m[0, 0]), m[p, 0].copy(), m[0, p].copy(), m[np.ix_(p, p)].copy()


def _egcd(a: int, b: int) -> tuple[int, int, int]:
    """(g, s, t) with s*a + t*b = g = gcd(a, b) >= 0."""
    s0, s1, t0, t1 = 1, 0, 0, 1
    while b:
        q, r = divmod(a, b)
        a, b = b, r
        s0, s1 = s1, s0 - q * s1
        t0, t1 = t1, t0 - q * t1
    if a < 0:
        a, s0, t0 = -a, -s0, -t0
    return a, s0, t0


def _pivot_rows_factorize(x: np.ndarray, max_rank: int):
    """mat = U @ x[I] with integer U, choosing r independent rows (smallest first), or None."""
    order = np.argsort(np.abs(x).max(axis=1), kind="stable")
    chosen: list[int] = []
    for i in order:
        if not np.any(x[i]):
            continue
        trial = x[chosen + [int(i)]].astype(np.float64)
        if np.linalg.matrix_rank(trial) == len(chosen) + 1:
            chosen.append(int(i))
            if len(chosen) > max_rank:
                return None
    if not chosen:
        return np.zeros((x.shape[0], 0), np.int64), np.zeros((0, x.shape[1]), np.int64)
    R = x[chosen]
    # r independent columns of R, then coordinates C = x[:, J] R[:, J]^-1 (rounded, then verified)
    cols: list[int] = []
    for j in range(x.shape[1]):
        if np.linalg.matrix_rank(R[:, cols + [j]].astype(np.float64)) == len(cols) + 1:
            cols.append(j)
            if len(cols) == len(chosen):
                break
    C = np.linalg.solve(R[:, cols].astype(np.float64).T, x[:, cols].astype(np.float64).T).T
    U = np.round(C)
    if np.abs(U).max(initial=0) >= 2**52:
        return None
    U = U.astype(np.int64)
    if not np.array_equal(U.astype(object) @ R.astype(object), x.astype(object)):
        return None
    return U, R.copy()


def integer_factorize(mat: np.ndarray, max_rank: int = MAX_FACTOR_RANK):
    """Exact integer factorization mat = U @ V of minimal rank (U: n x r, V: r x m), or None.

    First tries V = r of mat's own rows (smallest first) with integer coordinates, which
    keeps the factors small; otherwise V is an echelon basis of the lattice spanned by mat's
    rows (unimodular extended-gcd row operations, so every row has integer coordinates U).
    None when the rank exceeds `max_rank` or a factor does not fit int64.
    """
    x = np.asarray(mat, dtype=np.int64)
    if np.linalg.matrix_rank(x.astype(np.float64)) > max_rank + 1:
        return None
    quick = _pivot_rows_factorize(x, max_rank)
    if quick is not None:
        return quick
    basis: list[tuple[int, np.ndarray]] = []  # (pivot column, row as Python-int object array)

    def reduce_basis():
        # Hermite-style size reduction: positive pivots, entries above each pivot in [0, pivot)
        basis.sort(key=lambda e: e[0])
        for i, (p, b) in enumerate(basis):
            if b[p] < 0:
                b = -b
                basis[i] = (p, b)
            for j in range(i):
                q = int(basis[j][1][p]) // int(b[p])
                if q:
                    basis[j] = (basis[j][0], basis[j][1] - q * b)

    for row in x:
        r = row.astype(object)
        while True:
            nz = np.flatnonzero(r != 0)
            if nz.size == 0:
                break
            c = int(nz[0])
            hit = next((i for i, (p, _) in enumerate(basis) if p == c), None)
            if hit is None:
                basis.append((c, r))
                if len(basis) > max_rank:
                    return None
                reduce_basis()
                break
            b = basis[hit][1]
            while r[c] != 0:  # Euclid on rows: unimodular, keeps entries small
                q = int(b[c]) // int(r[c])
                b = b - q * r
                b, r = r, b
            basis[hit] = (c, b)
            reduce_basis()
    rank = len(basis)
    if rank == 0:
        return np.zeros((x.shape[0], 0), np.int64), np.zeros((0, x.shape[1]), np.int64)
    V = np.stack([b for _, b in basis])  # object, echelon
    U = np.zeros((x.shape[0], rank), dtype=object)
    res = x.astype(object)
    for i, (p, b) in enumerate(basis):
        col = res[:, p]
        piv = int(b[p])
        if any(int(v) % piv for v in col):
            return None  # cannot happen for a lattice basis; kept as a guard
        U[:, i] = col // piv
        res = res - np.outer(U[:, i], b)
    if np.any(res != 0):
        return None
    lim = 2**62
    if max(abs(int(v)) for v in V.ravel()) >= lim or max(abs(int(v)) for v in U.ravel()) >= lim:
        return None
    return U.astype(np.int64), V.astype(np.int64)


def _centre(U: np.ndarray, V: np.ndarray, const: int, alpha: np.ndarray, beta: np.ndarray):
    """Shift each factor by its integer mid-range, folding the shifts into linear terms.

    (u + mu)(v + nu) = u v + nu u + mu v + mu nu: halves the factor magnitudes, so BLAS
    chunks can be ~4x longer, without changing the represented table.
    """
    U = U.copy()
    V = V.copy()
    alpha = alpha.copy()
    beta = beta.copy()
    for r in range(U.shape[0]):
        mu = (int(U[r].min()) + int(U[r].max())) // 2
        nu = (int(V[r].min()) + int(V[r].max())) // 2
        U[r] -= mu
        V[r] -= nu
        alpha += nu * U[r]
        beta += mu * V[r]
        const += mu * nu
    return U, V, const, alpha, beta


_ANALYSIS_CACHE: OrderedDict = OrderedDict()
_ANALYSIS_LOCK = threading.Lock()


def analyze(mult, signed: bool | None = None, max_rank: int = MAX_FACTOR_RANK) -> TableAnalysis:
    """Find the cheapest exact decomposition of a multiplier table (cached by table hash)."""
    mt = as_multiplier(mult, signed)
    key = (mt.sha256, max_rank)
    with _ANALYSIS_LOCK:
        if key in _ANALYSIS_CACHE:
            _ANALYSIS_CACHE.move_to_end(key)
            return _ANALYSIS_CACHE[key]
    res = _analyze(mt, max_rank)
    with _ANALYSIS_LOCK:
        _ANALYSIS_CACHE[key] = res
        while len(_ANALYSIS_CACHE) > 256:
            _ANALYSIS_CACHE.popitem(last=False)
    return res


def _analyze(mt: MulTable, max_rank: int) -> TableAnalysis:
    T = mt.table.astype(np.int64)
    ex = exact_table(mt.signed)
    err_rank = int(np.linalg.matrix_rank((T - ex).astype(np.float64)))
    z = np.zeros(0, np.int64)
    if np.array_equal(T, ex):
        v = code_values(mt.signed)
        zero = np.zeros(256, np.int64)
        return TableAnalysis(mt.name, mt.signed, "exact", 1, 0, zero, zero.copy(), v[None, :].copy(),
                             v[None, :].copy(), mt.table, 0, "exact product table")
    # T = c + alpha[a] + beta[b] + T'[a, b], T' zero on row 0 and column 0; rank(T') is the
    # smallest bilinear rank over all choices of linear terms (T' = Q T Q'^T, Q 1 = 0).
    c = int(T[0, 0])
    alpha = T[:, 0] - c
    beta = T[0, :] - c
    Tp = T - T[:, :1] - T[:1, :] + c
    bl = bilinear_bits(T)
    if bl is not None:
        _, _, _, W = bl
        fac = integer_factorize(W, 8)
        if fac is not None:
            P, Q = fac  # W = P Q, (8 x r), (r x 8)
            bits = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.int64)
            U = (bits @ P).T  # (r, 256): U[r, a] = sum_i P[i, r] a_i
            V = (bits @ Q.T).T
            return TableAnalysis(mt.name, mt.signed, "bitplane", U.shape[0], c, alpha, beta, U, V,
                                 mt.table, err_rank, f"bilinear in operand bits, rank {U.shape[0]}")
    frank = int(np.linalg.matrix_rank(Tp.astype(np.float64)))
    if frank <= max_rank + 1:
        fac = integer_factorize(Tp, max_rank)
        if fac is not None:
            U, V = fac
            return TableAnalysis(mt.name, mt.signed, "lowrank", V.shape[0], c, alpha, beta, U.T.copy(), V,
                                 mt.table, err_rank, f"exact integer rank {U.shape[0]}")
    return TableAnalysis(mt.name, mt.signed, "lookup", -1, c, alpha, beta, z.reshape(0, 256),
                         z.reshape(0, 256), mt.table, err_rank, f"bilinear rank ~{frank}")


# ----------------------------------------------------------------------------------------
# Reference kernels
# ----------------------------------------------------------------------------------------
@njit(cache=True)
def _gemm_reference(A, B, T):
    M, K = A.shape
    N = B.shape[1]
    C = np.zeros((M, N), np.int64)
    for m in range(M):
        for k in range(K):
            a = A[m, k]
            for n in range(N):
                C[m, n] += T[a, B[k, n]]
    return C


def lut_gemm_reference(a_codes: np.ndarray, b_codes: np.ndarray, mult, signed: bool | None = None) -> np.ndarray:
    """Reference LUT GEMM: C[m,n] = sum_k T[A[m,k], B[k,n]] (int64), plain loops."""
    mt = as_multiplier(mult, signed)
    A, B = _check_gemm(a_codes, b_codes)
    return _gemm_reference(A, B, mt.table)


@njit(parallel=True, cache=True)
def _gemm_naive(A, Bt, T):
    M, K = A.shape
    N = Bt.shape[0]
    C = np.zeros((M, N), np.int64)
    for m in prange(M):
        for n in range(N):
            s = 0
            for k in range(K):
                s += T[A[m, k], Bt[n, k]]
            C[m, n] = s
    return C


def lut_gemm_naive(a_codes: np.ndarray, b_codes: np.ndarray, mult, signed: bool | None = None) -> np.ndarray:
    """The plain multithreaded Numba lookup GEMM (the peers' approach; benchmark baseline)."""
    mt = as_multiplier(mult, signed)
    A, B = _check_gemm(a_codes, b_codes)
    return _gemm_naive(A, np.ascontiguousarray(B.T), mt.table)


@njit(cache=True)
def _conv_reference(x, w, T, sh, sw, ph, pw, dh, dw, groups, pad):
    Bn, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    Ho = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    Og = O // groups
    out = np.zeros((Bn, O, Ho, Wo), np.int64)
    for b in range(Bn):
        for o in range(O):
            g = o // Og
            for oh in range(Ho):
                for ow in range(Wo):
                    s = 0
                    for c in range(Cg):
                        for i in range(KH):
                            ih = oh * sh - ph + i * dh
                            for j in range(KW):
                                iw = ow * sw - pw + j * dw
                                if 0 <= ih < H and 0 <= iw < W:
                                    a = x[b, g * Cg + c, ih, iw]
                                else:
                                    a = pad
                                s += T[a, w[o, c, i, j]]
                    out[b, o, oh, ow] = s
    return out


def lut_conv2d_reference(x_codes, w_codes, mult, stride=1, padding=0, dilation=1, groups=1,
                         pad_code: int = 0, signed: bool | None = None) -> np.ndarray:
    """Reference LUT convolution, direct loops: x (B,C,H,W), w (O,C/groups,kh,kw) codes -> int64 (B,O,Ho,Wo)."""
    mt = as_multiplier(mult, signed)
    x, w, (sh, sw), (ph, pw), (dh, dw) = _check_conv(x_codes, w_codes, stride, padding, dilation, groups)
    return _conv_reference(x, w, mt.table, sh, sw, ph, pw, dh, dw, groups, np.uint8(pad_code & 0xFF))


# ----------------------------------------------------------------------------------------
# Shape checks and im2col
# ----------------------------------------------------------------------------------------
def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _codes(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.int8:
        x = x.view(np.uint8)
    if x.dtype != np.uint8:
        raise ValueError(f"{what} must hold 8-bit codes (uint8, or int8 viewed as uint8), got dtype {x.dtype}")
    return np.ascontiguousarray(x)


def _check_gemm(a, b):
    A = _codes(a, "a_codes")
    B = _codes(b, "b_codes")
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"GEMM shapes do not match: a_codes {A.shape} @ b_codes {B.shape}")
    return A, B


def _check_conv(x, w, stride, padding, dilation, groups):
    x = _codes(x, "x_codes")
    w = _codes(w, "w_codes")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d needs x (B,C,H,W) and w (O,C/groups,kh,kw), got {x.shape} and {w.shape}")
    if groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"conv2d channels do not match: x {x.shape}, w {w.shape}, groups={groups}")
    s, p, d = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"conv2d stride/dilation must be >= 1 and padding >= 0, got {s}, {d}, {p}")
    return x, w, s, p, d


def conv_output_size(h: int, w: int, kh: int, kw: int, stride, padding, dilation) -> tuple[int, int]:
    """(Ho, Wo) of a convolution, torch's floor convention."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


@njit(parallel=True, cache=True)
def _im2col_padded(xp, KH, KW, sh, sw, dh, dw, Ho, Wo):
    """Patches of an already padded input xp (B, C, Hp, Wp): (B*Ho*Wo, C*KH*KW) uint8."""
    Bn, C, Hp, Wp = xp.shape
    K = C * KH * KW
    out = np.empty((Bn * Ho * Wo, K), np.uint8)
    for bo in prange(Bn * Ho):
        b = bo // Ho
        oh = bo % Ho
        for ow in range(Wo):
            row = (b * Ho + oh) * Wo + ow
            col = 0
            for c in range(C):
                for i in range(KH):
                    ih = oh * sh + i * dh
                    for j in range(KW):
                        out[row, col] = xp[b, c, ih, ow * sw + j * dw]
                        col += 1
    return out


@njit(parallel=True, cache=True)
def _im2col_cols(xp, KH, KW, sh, sw, dh, dw, Ho, Wo):
    """Transposed patches (column im2col): AT[k, m] = code of patch m, position k = (c, i, j)."""
    Bn, C, Hp, Wp = xp.shape
    K = C * KH * KW
    M = Bn * Ho * Wo
    AT = np.empty((K, M), np.uint8)
    xf = xp.reshape(-1)
    af = AT.reshape(-1)
    usw = uint64(sw)
    for bo in prange(Bn * Ho):
        b = bo // Ho
        oh = bo % Ho
        m0 = bo * Wo
        k = 0
        for c in range(C):
            for i in range(KH):
                rowbase = ((b * C + c) * Hp + oh * sh + i * dh) * Wp
                for j in range(KW):
                    # unsigned flat offsets: no negative-index fix-ups in the copy loop
                    src = uint64(rowbase + j * dw)
                    dst = uint64(k * M + m0)
                    for ow in range(uint64(Wo)):
                        af[dst + ow] = xf[src + ow * usw]
                    k += 1
    return AT


@njit(parallel=True, cache=True)
def _pad_codes(x, c0, C, ph, pw, pad):
    Bn, _, H, W = x.shape
    out = np.empty((Bn, C, H + 2 * ph, W + 2 * pw), np.uint8)
    for bc in prange(Bn * C):
        b = bc // C
        c = bc % C
        for h in range(H + 2 * ph):
            for w_ in range(W + 2 * pw):
                out[b, c, h, w_] = pad
        for h in range(H):
            for w_ in range(W):
                out[b, c, h + ph, w_ + pw] = x[b, c0 + c, h, w_]
    return out


def pad_codes(x: np.ndarray, padding, pad_code: int, channels: tuple[int, int] | None = None) -> np.ndarray:
    """x (B,C,H,W) codes (channel slice) padded with `pad_code` on both spatial sides."""
    ph, pw = _pair(padding, "padding")
    c0, c1 = channels if channels is not None else (0, x.shape[1])
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(x[:, c0:c1])
    return _pad_codes(np.ascontiguousarray(x), c0, c1 - c0, ph, pw, np.uint8(pad_code & 0xFF))


def im2col(x_codes, kh: int, kw: int, stride=1, padding=0, dilation=1, pad_code: int = 0,
           channels: tuple[int, int] | None = None) -> np.ndarray:
    """Patches of x (B,C,H,W) codes as a (B*Ho*Wo, C*kh*kw) uint8 matrix, column order (c, i, j)."""
    x = _codes(x_codes, "x_codes")
    (sh, sw), (dh, dw) = _pair(stride, "stride"), _pair(dilation, "dilation")
    Ho, Wo = conv_output_size(x.shape[2], x.shape[3], kh, kw, stride, padding, dilation)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d output would be empty: input {x.shape}, kernel {kh}x{kw}")
    xp = pad_codes(x, padding, pad_code, channels)
    return _im2col_padded(xp, kh, kw, sh, sw, dh, dw, Ho, Wo)


@njit(parallel=True, cache=True)
def _rowsum(A):
    M, K = A.shape
    out = np.zeros(M, np.int64)
    for m in prange(M):
        s = 0
        for k in range(K):
            s += A[m, k]
        out[m] = s
    return out


@njit(cache=True)
def _colsum(AT):
    K, M = AT.shape
    out = np.zeros(M, np.int64)
    for k in range(K):
        for m in range(M):
            out[m] += AT[k, m]
    return out


def code_rowsum(a_codes) -> np.ndarray:
    """sum_k A[m, k] over the unsigned code values (int64): the affine zero-point cross term."""
    return _rowsum(_codes(a_codes, "a_codes"))


# ----------------------------------------------------------------------------------------
# Factored (BLAS) paths: operand conversion
# ----------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _convert(A, Uf, alpha, use_alpha, want_rowsum, X):
    """X[m, r*K + k] = Uf[r, A[m, k]] (X's float type); salpha[m] = sum_k alpha[A[m, k]];
    rowsum[m] = sum_k A[m, k] (when asked: the affine cross term)."""
    M, K = A.shape
    R = Uf.shape[0]
    salpha = np.zeros(M, np.int64)
    rowsum = np.zeros(M, np.int64)
    for m in prange(M):
        for r in range(R):
            base = r * K
            for k in range(K):
                X[m, base + k] = Uf[r, A[m, k]]
        if use_alpha:
            s = 0
            for k in range(K):
                s += alpha[A[m, k]]
            salpha[m] = s
        if want_rowsum:
            s = 0
            for k in range(K):
                s += A[m, k]
            rowsum[m] = s
    return X, salpha, rowsum


@njit(parallel=True, cache=True)
def _convert_cols(AT, Uf, aff_s, aff_t, affine, signed, alpha, use_alpha, want_rowsum, XT):
    """XT[r*K + k, m] = Uf[r, AT[k, m]]; salpha[m] = sum_k alpha[AT[k, m]]; rowsum[m] = sum_k AT[k, m].

    When every factor is affine in the code value (affine: Uf[r, a] = s_r * value(a) + t_r,
    e.g. the exact and perforated tables) the lookup becomes a vectorizable conversion.
    Parallel over column blocks: every task writes its own columns of every row.
    """
    K, M = AT.shape
    R = Uf.shape[0]
    salpha = np.zeros(M, np.int64)
    rowsum = np.zeros(M, np.int64)
    cb = 2048
    for t in prange((M + cb - 1) // cb):
        m0 = t * cb
        m1 = min(M, m0 + cb)
        for r in range(R):
            sr = aff_s[r]
            tr = aff_t[r]
            for k in range(K):
                row = r * K + k
                if affine and signed:
                    for m in range(m0, m1):
                        XT[row, m] = sr * np.float32(np.int8(AT[k, m])) + tr
                elif affine:
                    for m in range(m0, m1):
                        XT[row, m] = sr * np.float32(AT[k, m]) + tr
                else:
                    for m in range(m0, m1):
                        XT[row, m] = Uf[r, AT[k, m]]
        if use_alpha:
            for k in range(K):
                for m in range(m0, m1):
                    salpha[m] += alpha[AT[k, m]]
        if want_rowsum:
            for k in range(K):
                for m in range(m0, m1):
                    rowsum[m] += AT[k, m]
    return XT, salpha, rowsum


# ----------------------------------------------------------------------------------------
# Epilogues: integer accumulators -> int64 results, or dequantized float32 outputs
# ----------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _emit_int(acc, nm, salpha, sbeta, ck, out3, row0):
    """out3[b, n, p] = acc + linear terms (int64) for flat row row0 + m = b * P + p.

    acc is (M, N), or (N, M) when nm. Tiles hold whole images (M % P == 0, row0 % P == 0).
    """
    N = out3.shape[1]
    P = out3.shape[2]
    M = acc.shape[1] if nm else acc.shape[0]
    nimg = M // P
    b0 = row0 // P
    for t in prange(nimg * N):
        bl = t // N
        n = t % N
        sb = sbeta[n] + ck
        for p in range(P):
            m = bl * P + p
            v = acc[n, m] if nm else acc[m, n]
            out3[b0 + bl, n, p] = np.int64(v) + salpha[m] + sb


@njit(parallel=True, cache=True)
def _emit_float(acc, nm, salpha, sbeta, ck, rowsum, zw, cterm, scale, bias, out3, row0):
    """Fused epilogue: integer accumulator (+ linear and affine zero-point terms, exact in
    int64), then real = float64(acc) * scale[n] + bias[n], rounded once to float32, written
    as out3[b, n, p] for flat output row row0 + m = b * P + p (tiles hold whole images)."""
    N = out3.shape[1]
    P = out3.shape[2]
    M = acc.shape[1] if nm else acc.shape[0]
    nimg = M // P
    b0 = row0 // P
    for t in prange(nimg * N):
        bl = t // N
        n = t % N
        sb = sbeta[n] + cterm[n] + ck
        z = zw[n]
        sc = scale[n]
        bi = bias[n]
        for p in range(P):
            m = bl * P + p
            v = acc[n, m] if nm else acc[m, n]
            iv = np.int64(v) + salpha[m] + sb - z * rowsum[m]
            out3[b0 + bl, n, p] = np.float32(np.float64(iv) * sc + bi)


@dataclass(frozen=True, eq=False)
class Epilogue:
    """Affine zero-point correction and dequantization fused into a layer's GEMM.

    acc' = acc - zw[n] * sum_k a - za * sum_k w[:, n] + K * za * zw[n]  (exact, int64)
    real = float64(acc') * scale[n] + bias[n], rounded to float32 (see cosim.quant).
    """

    scale: np.ndarray  # (N,) float64
    bias: np.ndarray  # (N,) float64
    za: int = 0
    zw: np.ndarray | None = None  # (N,) int64, None for the symmetric scheme

    @property
    def affine(self) -> bool:
        """True when zero-point cross terms are present."""
        return self.zw is not None and (self.za != 0 or bool(np.any(self.zw)))


def dequantize_acc(acc: np.ndarray, scale, bias=None) -> np.ndarray:
    """The epilogue's arithmetic on already corrected int64 accumulators (last axis = channel)."""
    y = acc.astype(np.float64) * np.asarray(scale, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y.astype(np.float32)


def _chunks(bounds: np.ndarray, K: int, limit: int) -> list[tuple[int, int]] | None:
    """Cut the concatenated (r, k) reduction axis into [i0, i1) chunks with sum of bounds <= limit."""
    chunks = []
    start, used = 0, 0
    for r, bnd in enumerate(bounds.tolist()):
        if bnd > limit:
            return None
        if bnd == 0:
            continue
        k = 0
        while k < K:
            take = min(K - k, (limit - used) // bnd)
            if take == 0:
                chunks.append((start, r * K + k))
                start, used = r * K + k, 0
                continue
            k += take
            used += take * bnd
        # factor r fully placed; the next factor continues the same chunk
    end = len(bounds) * K
    if end > start:
        chunks.append((start, end))
    return [(a, b) for a, b in chunks if b > a]


# ----------------------------------------------------------------------------------------
# Lookup path
# ----------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _build_rows(B, T, nb, out):
    """out[q, k, a, j] = T[a, B[k, q*nb + j]] (zero for padded columns)."""
    K, N = B.shape
    nblk = out.shape[0]
    for qk in prange(nblk * K):
        q = qk // K
        k = qk % K
        for j in range(nb):
            n = q * nb + j
            if n < N:
                b = B[k, n]
                for a in range(256):
                    out[q, k, a, j] = T[a, b]
            else:
                for a in range(256):
                    out[q, k, a, j] = 0
    return out


@njit(parallel=True, cache=True)
def _lookup_gemm(AT, Gf, N, nb, nblk, kb, mb):
    """C[m, q*nb + j] = sum_k G[q, k, AT[k, m], j] with int32 accumulators (caller bounds
    K * max|T| < 2^31). AT is the transposed code matrix (K, M)."""
    K, M = AT.shape
    C = np.empty((M, N), np.int32)
    nmb = (M + mb - 1) // mb
    unb = uint64(nb)
    for task in prange(nblk * nmb):
        q = task // nmb
        mi = task % nmb
        m0 = mi * mb
        m1 = min(M, m0 + mb)
        acc = np.zeros((m1 - m0) * nb, np.int32)
        qK = q * K
        for k0 in range(0, K, kb):
            k1 = min(K, k0 + kb)
            for m in range(m0, m1):
                cb = uint64((m - m0) * nb)
                k = k0
                # four table rows per pass: one accumulator read-modify-write per four rows;
                # unsigned offsets keep Numba from emitting negative-index fix-ups, which
                # would stop LLVM from vectorizing the row loop
                while k + 4 <= k1:
                    o0 = uint64((qK + k) * 256 + AT[k, m]) * unb
                    o1 = uint64((qK + k + 1) * 256 + AT[k + 1, m]) * unb
                    o2 = uint64((qK + k + 2) * 256 + AT[k + 2, m]) * unb
                    o3 = uint64((qK + k + 3) * 256 + AT[k + 3, m]) * unb
                    for j in range(unb):
                        acc[cb + j] += (np.int32(Gf[o0 + j]) + np.int32(Gf[o1 + j])) + \
                                       (np.int32(Gf[o2 + j]) + np.int32(Gf[o3 + j]))
                    k += 4
                while k < k1:
                    o0 = uint64((qK + k) * 256 + AT[k, m]) * unb
                    for j in range(unb):
                        acc[cb + j] += np.int32(Gf[o0 + j])
                    k += 1
        nw = min(nb, N - q * nb)
        for m in range(m0, m1):
            for j in range(nw):
                C[m, q * nb + j] = acc[(m - m0) * nb + j]
    return C


def _lookup_block(N: int) -> int:
    """Column block of the lookup kernel: multiples of 32 (LLVM's vector loop does 32 int32 per
    pass) from 32 columns up, else a multiple of 8 (short rows run scalar; less padding wins)."""
    if N < 32:
        return max(8, -(-N // 8) * 8)
    return min(128, -(-N // 32) * 32)


# ----------------------------------------------------------------------------------------
# Per-layer prepared GEMM (weights fixed), path choice
# ----------------------------------------------------------------------------------------
FACTORED = ("exact", "bitplane", "lowrank")


def estimate_costs(an: TableAnalysis, M: int, K: int, N: int) -> dict[str, float]:
    """Modelled time (ns) of each available path for an M x K x N GEMM (see the constants above)."""
    costs = {}
    nb = _lookup_block(N)
    costs["lookup"] = LUT_NS_PER_MAC * M * K * (-(-N // nb) * nb)
    if an.factored:
        r = max(an.rank, 1)
        costs[an.kind] = GEMM_NS_PER_MAC * r * M * K * max(N, 16) + CONVERT_NS_PER_ELEM * r * M * K
    return costs


def choose_path(an: TableAnalysis, M: int, K: int, N: int) -> tuple[str, str]:
    """(path, reason): the cheapest modelled exact path for this table and GEMM shape."""
    costs = estimate_costs(an, M, K, N)
    best = min(costs, key=costs.get)
    reason = ", ".join(f"{k}~{v / 1e6:.2f}ms" for k, v in sorted(costs.items(), key=lambda kv: kv[1]))
    return best, f"{an.note}; model: {reason}"


class PreparedGemm:
    """One layer's LUT GEMM with its weights fixed: C = sum_k T[A[m,k], B[k,n]] for any A.

    path: "auto" (per-call choice by `choose_path`), or one of PATHS (an unavailable factored
    path raises; "lowrank" accepts any factored table), or "naive" / "reference" for the plain
    kernels. Large calls are processed in row tiles so converted operands stay in cache.
    """

    TILE_BYTES = 4 << 20  # converted-operand bytes per row tile

    def __init__(self, b_codes, mult, path: str = "auto", signed: bool | None = None):
        self.mult = as_multiplier(mult, signed)
        self.B = _codes(b_codes, "b_codes")
        if self.B.ndim != 2:
            raise ValueError(f"b_codes must be (K, N), got shape {self.B.shape}")
        if path not in ("auto", "naive", "reference") + PATHS:
            raise ValueError(f"path must be 'auto', 'naive', 'reference' or one of {PATHS}, got {path!r}")
        self.analysis = analyze(self.mult)
        if path in FACTORED and self.analysis.kind != path:
            if not (path == "lowrank" and self.analysis.factored):
                raise ValueError(f"multiplier {self.mult.name!r} admits path {self.analysis.kind!r}, not {path!r}")
        self.requested = path
        self.K, self.N = self.B.shape
        self._factored = None
        self._rows = None
        self._bt = None
        self._wsum = None
        self._ws: dict = {}
        self.last_path = None
        self.last_reason = ""

    # -- factored ------------------------------------------------------------------------
    def _prepare_factored(self):
        if self._factored is not None:
            return self._factored
        an, K, N = self.analysis, self.K, self.N
        best = None
        # raw factors, or centred ones (smaller, so longer exact chunks, but linear terms);
        # keep the variant with the fewest float32 chunks, raw on a tie
        for centre in (False, True):
            U, V, c, al, be = (_centre(an.U, an.V, an.const, an.alpha, an.beta) if centre
                               else (an.U, an.V, an.const, an.alpha, an.beta))
            bounds = np.abs(U).max(axis=1) * np.abs(V).max(axis=1)
            ch = _chunks(bounds, K, F32_EXACT)
            if ch is not None and (best is None or len(ch) < len(best[0])):
                best = (ch, np.float32, U, V, c, al, be)
        if best is None or len(best[0]) > 8 * max(an.rank, 1):
            U, V, c, al, be = _centre(an.U, an.V, an.const, an.alpha, an.beta)
            ch = _chunks(np.abs(U).max(axis=1) * np.abs(V).max(axis=1), K, F64_EXACT)
            if ch is None:
                raise ValueError(f"multiplier {self.mult.name!r}: factors too large for exact BLAS")
            best = (ch, np.float64, U, V, c, al, be)
        chunks, dtype, U, V, c, al, be = best
        # Y[r*K + k, n] = V[r, B[k, n]]
        Y = np.empty((an.rank * K, N), dtype)
        for r in range(an.rank):
            Y[r * K:(r + 1) * K] = V[r][self.B]
        sbeta = be[self.B].sum(axis=0) if np.any(be) else np.zeros(N, np.int64)
        ys = [np.ascontiguousarray(Y[a:b]) for a, b in chunks]
        ysT = [np.ascontiguousarray(y.T) for y in ys]
        # factors affine in the code value convert without a lookup (exact: s*a + t is exact
        # in float for |values| < 2^24, which the chunk bound already guarantees)
        vals = code_values(an.signed)
        aff_s = np.zeros(an.rank, dtype)
        aff_t = np.zeros(an.rank, dtype)
        affine = True
        for r in range(an.rank):
            s_r = int(U[r, 1]) - int(U[r, 0])
            t_r = int(U[r, 0])
            if not np.array_equal(s_r * vals + t_r, U[r]):
                affine = False
                break
            aff_s[r], aff_t[r] = s_r, t_r
        self._factored = {"chunks": chunks, "ys": ys, "ysT": ysT, "Uf": U.astype(dtype), "dtype": dtype,
                          "affine": affine, "aff_s": aff_s, "aff_t": aff_t,
                          "sbeta": np.ascontiguousarray(sbeta, dtype=np.int64), "ck": np.int64(int(c) * K),
                          "alpha": np.ascontiguousarray(al, dtype=np.int64), "use_alpha": bool(np.any(al))}
        return self._factored

    def _gemm_chunks(self, X, transposed: bool):
        """sum over chunks of X_c @ Y_c (or Y_c^T @ X_c^T when transposed), exact."""
        f = self._factored
        chunks = f["chunks"]
        if transposed:
            if len(chunks) == 1:
                return f["ysT"][0] @ X
            acc = np.zeros((self.N, X.shape[1]), np.float64)
            for (a, b), yT in zip(chunks, f["ysT"]):
                acc += yT @ X[a:b]
            return acc
        if len(chunks) == 1:
            return X @ f["ys"][0]
        acc = np.zeros((X.shape[0], self.N), np.float64)
        for (a, b), y in zip(chunks, f["ys"]):
            acc += X[:, a:b] @ y
        return acc

    # -- lookup --------------------------------------------------------------------------
    def _prepare_rows(self):
        if self._rows is None:
            t = self.mult.table
            lo, hi = int(t.min()), int(t.max())
            dt = np.uint16 if lo >= 0 and hi < 65536 else (np.int16 if lo >= -32768 and hi < 32768 else np.int32)
            nb = _lookup_block(self.N)
            nblk = -(-self.N // nb)
            out = np.empty((nblk, self.K, 256, nb), dt)
            self._rows = (_build_rows(self.B, t.astype(dt), nb, out).reshape(-1), nb, nblk)
        return self._rows

    def _lookup(self, AT):
        """Lookup-kernel accumulators (M, N) from transposed codes AT (K, M)."""
        Gf, nb, nblk = self._prepare_rows()
        maxabs = int(np.abs(self.mult.table.astype(np.int64)).max())
        kmax = max(1, (2**31 - 1) // max(maxabs, 1))
        M = AT.shape[1]
        # the slab of kb*256 rows is hit at random, so it should stay in L2 (256 KiB of the
        # 512 KiB here); accumulator tiles are streamed, so m-blocks can be long
        kb = max(4, min(64, (256 * 1024) // (256 * nb * Gf.itemsize) // 4 * 4))
        tasks = 2 * max(1, numba.get_num_threads())
        mb = min(1024, max(64, -(-M * nblk // tasks)))
        if self.K <= kmax:
            return _lookup_gemm(AT, Gf, self.N, nb, nblk, kb, mb)
        out = np.zeros((M, self.N), np.int64)  # int32 would overflow: sum K-chunks in int64
        G4 = Gf.reshape(nblk, self.K, 256, nb)
        for k0 in range(0, self.K, kmax):
            k1 = min(self.K, k0 + kmax)
            sub = np.ascontiguousarray(G4[:, k0:k1]).reshape(-1)
            out += _lookup_gemm(np.ascontiguousarray(AT[k0:k1]), sub, self.N, nb, nblk, kb, mb)
        return out

    def _buffer(self, name: str, shape, dtype) -> np.ndarray:
        """A reusable work array: fresh multi-MB arrays cost page faults on every tile."""
        buf = self._ws.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._ws[name] = buf
        return buf

    def _plain(self, A, path):
        if path == "naive":
            if self._bt is None:
                self._bt = np.ascontiguousarray(self.B.T)
            return _gemm_naive(A, self._bt, self.mult.table)
        return _gemm_reference(A, self.B, self.mult.table)

    # -- public --------------------------------------------------------------------------
    def path_for(self, M: int) -> tuple[str, str]:
        """(path, reason) this layer uses for M activation rows."""
        if self.requested != "auto":
            return self.requested, "requested"
        return choose_path(self.analysis, M, self.K, self.N)

    def _epilogue_state(self, epilogue: Epilogue):
        affine = epilogue.affine
        zw = (np.broadcast_to(np.asarray(epilogue.zw, np.int64), (self.N,)).copy() if affine
              else np.zeros(self.N, np.int64))
        if affine:
            if self._wsum is None:
                self._wsum = self.B.astype(np.int64).sum(axis=0)
            cterm = -epilogue.za * self._wsum + self.K * epilogue.za * zw
        else:
            cterm = np.zeros(self.N, np.int64)
        scale = np.ascontiguousarray(np.broadcast_to(np.asarray(epilogue.scale, np.float64), (self.N,)))
        bias = np.ascontiguousarray(np.broadcast_to(np.asarray(epilogue.bias, np.float64), (self.N,)))
        return affine, zw, cterm, scale, bias

    def _emit(self, acc, nm, salpha, sbeta, ck, rs, st, out3, row0):
        if st is None:
            _emit_int(acc, nm, salpha, sbeta, ck, out3, row0)
        else:
            _emit_float(acc, nm, salpha, sbeta, ck, rs, st[1], st[2], st[3], st[4], out3, row0)

    def __call__(self, a_codes, epilogue: Epilogue | None = None, out=None, row0: int = 0):
        """C = sum_k T[A[m,k], B[k,n]] (int64, shape (M, N)).

        With an `epilogue`, writes the dequantized float32 result into out[b, n, p] for flat
        output rows row0 + m = b * P + p (out has shape (B, N, P), default (M, N, 1)) and
        returns `out`.
        """
        A = _codes(a_codes, "a_codes")
        if A.ndim != 2 or A.shape[1] != self.K:
            raise ValueError(f"a_codes must be (M, {self.K}), got shape {A.shape}")
        M = A.shape[0]
        path, reason = self.path_for(M)
        self.last_path, self.last_reason = path, reason
        st = None if epilogue is None else self._epilogue_state(epilogue)
        if out is None:
            out = np.empty((M, self.N, 1), np.int64 if epilogue is None else np.float32)
        P = out.shape[2]
        factored = path in FACTORED
        width = self.K * (max(self.analysis.rank, 1) * 4 if factored else 1)
        step = max(P, (self.TILE_BYTES // max(width, 1)) // P * P)  # whole images per tile
        want_rs = st is not None and st[0]
        zero_n = np.zeros(self.N, np.int64)
        for m0 in range(0, M, step):
            At = A[m0:min(M, m0 + step)]
            mt = At.shape[0]
            if factored:
                f = self._prepare_factored()
                X = self._buffer("X", (mt, f["Uf"].shape[0] * self.K), f["dtype"])
                X, salpha, rs = _convert(At, f["Uf"], f["alpha"], f["use_alpha"], want_rs, X)
                acc = self._gemm_chunks(X, False)
                self._emit(acc, False, salpha, f["sbeta"], f["ck"], rs, st, out, row0 + m0)
                continue
            if path == "lookup":
                acc = self._lookup(np.ascontiguousarray(At.T))
            else:
                acc = self._plain(At, path)
            rs = _rowsum(At) if want_rs else np.zeros(mt, np.int64)
            self._emit(acc, False, np.zeros(mt, np.int64), zero_n, np.int64(0), rs, st, out, row0 + m0)
        if epilogue is None and P == 1:
            return out.reshape(M, self.N)
        return out

    def run_patches(self, xp, geom, epilogue: Epilogue | None, out, row0: int):
        """One batch tile of a convolution from its padded input xp (B, C, Hp, Wp).

        geom = (KH, KW, sh, sw, dh, dw, Ho, Wo); writes out[b, n, p] (int64 without an
        epilogue, float32 with one) for the tile's images, starting at flat row row0.
        """
        KH, KW, sh, sw, dh, dw, Ho, Wo = geom
        M = xp.shape[0] * Ho * Wo
        path, reason = self.path_for(M)
        self.last_path, self.last_reason = path, reason
        st = None if epilogue is None else self._epilogue_state(epilogue)
        want_rs = st is not None and st[0]
        if path in FACTORED:
            f = self._prepare_factored()
            AT = _im2col_cols(xp, KH, KW, sh, sw, dh, dw, Ho, Wo)
            XT = self._buffer("XT", (f["Uf"].shape[0] * self.K, M), f["dtype"])
            XT, salpha, rs = _convert_cols(AT, f["Uf"], f["aff_s"], f["aff_t"], f["affine"], self.analysis.signed,
                                           f["alpha"], f["use_alpha"], want_rs, XT)
            accT = self._gemm_chunks(XT, True)
            self._emit(accT, True, salpha, f["sbeta"], f["ck"], rs, st, out, row0)
            return out
        if path == "lookup":
            AT = _im2col_cols(xp, KH, KW, sh, sw, dh, dw, Ho, Wo)
            acc = self._lookup(AT)
            rs = _colsum(AT) if want_rs else np.zeros(M, np.int64)
        else:
            A = _im2col_padded(xp, KH, KW, sh, sw, dh, dw, Ho, Wo)
            acc = self._plain(A, path)
            rs = _rowsum(A) if want_rs else np.zeros(M, np.int64)
        self._emit(acc, False, np.zeros(M, np.int64), np.zeros(self.N, np.int64), np.int64(0), rs, st, out, row0)
        return out

    def describe(self) -> dict:
        """JSON-ready: multiplier, table kind, last path used and why."""
        return {"multiplier": self.mult.name, "kind": self.analysis.kind, "rank": self.analysis.rank,
                "K": self.K, "N": self.N, "path": self.last_path, "reason": self.last_reason}


def ax_gemm(a_codes, b_codes, mult, path: str = "auto", signed: bool | None = None) -> np.ndarray:
    """LUT-exact approximate GEMM C[m,n] = sum_k T[A[m,k], B[k,n]] (int64) by the chosen path."""
    A, B = _check_gemm(a_codes, b_codes)
    return PreparedGemm(B, mult, path, signed)(A)


class PreparedConv2d:
    """One conv layer's LUT convolution with its weights fixed (groups handled as separate GEMMs).

    Calls are processed in batch tiles (patches of a tile, then its GEMM), so the patch
    matrix of a large batch never exists whole.
    """

    TILE_BYTES = 4 << 20

    def __init__(self, w_codes, mult, stride=1, padding=0, dilation=1, groups: int = 1,
                 path: str = "auto", signed: bool | None = None):
        w = _codes(w_codes, "w_codes")
        if w.ndim != 4 or w.shape[0] % groups:
            raise ValueError(f"w_codes must be (O, C/groups, kh, kw) with O divisible by groups={groups}, got {w.shape}")
        self.w = w
        self.stride, self.padding, self.dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
        self.groups = int(groups)
        O, Cg, kh, kw = w.shape
        og = O // groups
        self.gemms = [PreparedGemm(w[g * og:(g + 1) * og].reshape(og, -1).T, mult, path, signed)
                      for g in range(groups)]

    def __call__(self, x_codes, pad_code: int = 0, epilogue: Epilogue | None = None):
        """LUT convolution of x (B, C, H, W) codes.

        Without an epilogue: int64 (B, O, Ho, Wo) accumulators. With one: the dequantized
        float32 (B, O, Ho, Wo) output (per-channel epilogue arrays have length O).
        """
        x, *_ = _check_conv(x_codes, self.w, self.stride, self.padding, self.dilation, self.groups)
        Bn, C, H, W = x.shape
        O, Cg, kh, kw = self.w.shape
        Ho, Wo = conv_output_size(H, W, kh, kw, self.stride, self.padding, self.dilation)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"conv2d output would be empty: input {x.shape}, kernel {kh}x{kw}")
        og, P = O // self.groups, Ho * Wo
        per_image = P * Cg * kh * kw * max(1, self.gemms[0].analysis.rank) * 4
        bt = max(1, self.TILE_BYTES // max(per_image, 1))
        out = np.empty((Bn, O, P), np.int64 if epilogue is None else np.float32)
        geom = (kh, kw, self.stride[0], self.stride[1], self.dilation[0], self.dilation[1], Ho, Wo)
        for g, gemm in enumerate(self.gemms):
            sub = None
            if epilogue is not None:
                sl = slice(g * og, (g + 1) * og)
                pick = lambda v: None if v is None else np.broadcast_to(np.asarray(v), (O,))[sl]  # noqa: E731
                sub = Epilogue(pick(epilogue.scale), pick(epilogue.bias), epilogue.za, pick(epilogue.zw))
            gout = out if self.groups == 1 else np.empty((Bn, og, P), out.dtype)
            xp = pad_codes(x, self.padding, pad_code, (g * Cg, (g + 1) * Cg))
            for b0 in range(0, Bn, bt):
                gemm.run_patches(xp[b0:min(Bn, b0 + bt)], geom, sub, gout, b0 * P)
            if self.groups != 1:
                out[:, g * og:(g + 1) * og] = gout
        return out.reshape(Bn, O, Ho, Wo)

    def describe(self) -> dict:
        """Path report of the first group's GEMM (all groups share the multiplier and shape)."""
        return self.gemms[0].describe()


def ax_conv2d(x_codes, w_codes, mult, stride=1, padding=0, dilation=1, groups: int = 1,
              pad_code: int = 0, path: str = "auto", signed: bool | None = None) -> np.ndarray:
    """LUT-exact approximate convolution (int64 (B,O,Ho,Wo)) by the chosen path."""
    return PreparedConv2d(w_codes, mult, stride, padding, dilation, groups, path, signed)(x_codes, pad_code)
