"""LUT-exact approximate GEMM and convolution on 8-bit codes (Numba + BLAS).

Semantics (the reference): C[m, n] = sum_k T[A[m, k], B[k, n]] with exact integer sums, where
T is a multiplier's 256x256 table indexed [a_code, b_code] (a = activation, port A; b = weight,
port B) and codes are 8-bit patterns (uint8; for signed multipliers code c means int8(c)).
A convolution is the same GEMM over im2col patches; padded positions carry `pad_code` (the
code of real zero) and go through the multiplier like every other operand, as they do in an
array that multiplies the padded ifmap.

Fast paths, each bit-exact against the reference (tests/cosim/test_axkernels.py):

- ``exact``: T is the exact product table -> float32 products on operand values.
- ``bitplane``: T is bilinear in the operand bits (truncation, perforation, broken array, ...,
  with constants and linear terms): T[a,b] = c + alpha[a] + beta[b] + bits(a)^T W bits(b),
  found from the table alone by a Moebius transform; an integer factorization W = P Q of rank r
  gives r bit-plane factors.
- ``lowrank``: T minus its first row and column (T' = T - T[:,0] - T[0,:] + T[0,0], which
  leaves the minimal bilinear rank) has a small exact integer factorization T' = U V (lattice
  basis of its rows); same machinery as ``bitplane`` with looked-up operand factors.
  The factored paths (these three) run a GEMM as one BLAS product over the r factor matrices,
  and a convolution as one torch direct convolution over r factor planes of the padded ifmap
  (no patch matrix; im2col + BLAS when torch is missing).
- int8 backend of the three factored paths: where the factors fit int8 (each shifted by a
  constant, a common divisor moved between the sides; `_int8_variant`), the r factor
  matrices run as one int8 x int8 -> int32 GEMM (torch._int_mm; oneDNN's VNNI kernels),
  exact integer arithmetic with the reduction cut into chunks whose bound stays below 2^31.
  Used only after a self-test on worst-case operands passes on this CPU (`int8_gemm`). The
  cost model picks float or int8 per GEMM; convolutions (im2col + int8 GEMM) take it only
  when pinned, as their operand conversion costs more than torch's direct convolution.
- ``lookup``: a lookup kernel over per-layer precomputed weight rows G[k, a, :] = T[a, B[k, :]]
  (the weights are fixed, so this is built once per layer, on 64-byte boundaries): each (m, k)
  adds one contiguous row of 8 or 16 columns with explicit AVX2 vector adds, eight tables at a
  time whose eight codes are consecutive bytes read by one 64-bit load (a GEMM's rows, or a
  kernel row of an NHWC copy of the padded ifmap read in place: implicit im2col). Tables that are an
  offset plus a multiple of a short integer range (truncation and broken-array designs drop
  low partial products, so theirs are multiples of 2^t) are summed in int16 lanes (`narrow_lut`).
  Convolutions with few output channels (N <= 8, unit column stride) take row windows instead
  (`_lut_window`): each input column's code looks up the 32-lane products with a whole kernel
  row (KW taps x N channels), and an output sums KW of those windows, so LeNet-5's 5x5 conv1
  adds five 30-lane rows per output where the patch layout adds 25 rows of 6.

Why the float paths are exact: every operand factor is an integer, and the reduction is cut
into chunks whose bound sum_k max|U| |V[B[k, n]]| (from the layer's actual weights) is <= 2^24
for every output n. Then every product and every partial sum, in any order, blocking or FMA
contraction a BLAS or oneDNN may use, is an integer of magnitude <= 2^24, which float32
represents exactly, so no rounding ever happens; chunk results are summed exactly in float64
(< 2^53) and converted to int64. (oneDNN's direct convolution is used; NNPACK, whose
Winograd/FFT transforms are not sub-sums of exact products, is switched off around the call,
and reduced-precision fp32 math modes disable the torch path.)

The path is chosen per layer (`choose_path`) by a cost model whose constants were measured on
the development machine; a convolution whose lookup and direct-convolution costs it models
within CONV_PATH_TIMING_BAND of each other runs both once per layer geometry and keeps the
faster. `PreparedGemm.describe()` says which path a layer took and why.
Measured ratios against exact float32 torch: benchmarks/bench_kernels.py.

Every Numba kernel here is `parallel=True` over disjoint output rows or tiles with integer
arithmetic only, so results do not depend on the thread count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numba
from llvmlite import ir as llvm_ir
from numba import njit, prange, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic, overload

F32_EXACT = 2**24  # float32 represents every integer of magnitude <= 2^24
F64_EXACT = 2**53
PATHS = ("exact", "bitplane", "lowrank", "lookup")
MAX_FACTOR_RANK = 16  # factorization is not attempted beyond this bilinear rank

# Cost model for the automatic path choice (ns, measured on the 2-core AMD EPYC (Zen 3)
# development machine, single thread; see benchmarks/bench_kernels.py). Only ratios matter.
# Refitted (non-negative least squares over the 9 benchmark shapes x 4 designs, every path)
# after the lookup kernel moved to packed 8-code groups: mean time of the chosen path 1.002x
# the fastest measured one (1.025x with the old constants, which sent first conv layers to the
# factored path, whose output pass dominates there).
GEMM_NS_PER_MAC = 0.04  # float32 BLAS, per MAC (narrow layers count as N = 16)
CONVERT_NS_PER_ELEM = 0.8  # patch gathering + factor conversion, per element and factor
CONV_NS_PER_MAC = 0.024  # torch direct convolution, per MAC (output channels padded to 8)
CONVERT_PLANE_NS = 1.95  # factor conversion of the padded ifmap, per element and factor
LUT_NARROW_NS = 0.96  # int16-accumulating lookup kernel, per (m, k, 16-column block)
LUT_WIDE_NS = 1.19  # int32-accumulating lookup kernel, per (m, k, 16-column block)
LUT_NB8_FACTOR = 0.8  # an 8-column block costs this fraction of a 16-column one
LUT_NB32_FACTOR = 1.8  # a 32-column block (one 64-byte int16 row) costs this multiple of a 16-column one
LUT_ROW_BYTE_NS = 0.02  # streaming the per-layer table rows from memory, per byte and call
LUT_OUT_NS = 1.24  # accumulators to the (int64 or float32) output, per output element
CONV_OUT_NS = 2.65  # direct convolution: channels-last float output to the output, per element
CONV_OUT_BLOCKED_NS = 5.9  # the same when N % 8 != 0 (torch answers a slower layout)


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
    narrow: tuple | None = None  # (offset, scale, rows) of the int16 lookup (`narrow_lut`), or None
    int8: tuple | None = field(default=None, repr=False)  # `_int8_variant` factors, or None

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
                "v_max": self.v_max().tolist(), "note": self.note,
                "lookup_int16_rows": None if self.narrow is None else int(self.narrow[2])}


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
    an = _analyze(mt, max_rank)
    res = dataclasses.replace(an, narrow=narrow_lut(mt.table), int8=_int8_variant(an))
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
                                 mt.table, err_rank, f"exact integer rank {V.shape[0]}")
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
def _pad_codes(x, c0, C, ph, pw, pad, out):
    Bn, _, H, W = x.shape
    Hp = H + 2 * ph
    for bc in prange(Bn * C):
        b = bc // C
        c = bc % C
        o = out[b, c]
        xi = x[b, c0 + c]
        for h in range(ph):
            o[h, :] = pad
            o[Hp - 1 - h, :] = pad
        for h in range(H):
            r = o[h + ph]
            r[:pw] = pad
            r[pw + W:] = pad
            r[pw:pw + W] = xi[h]
    return out


def pad_codes(x: np.ndarray, padding, pad_code: int, channels: tuple[int, int] | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """x (B,C,H,W) codes (channel slice) padded with `pad_code` on both spatial sides (into `out`
    when given: a (B, C, H+2ph, W+2pw) uint8 work array)."""
    ph, pw = _pair(padding, "padding")
    c0, c1 = channels if channels is not None else (0, x.shape[1])
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(x[:, c0:c1])
    shape = (x.shape[0], c1 - c0, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
    if out is None or out.shape != shape or out.dtype != np.uint8:
        out = np.empty(shape, np.uint8)
    return _pad_codes(np.ascontiguousarray(x), c0, c1 - c0, ph, pw, np.uint8(pad_code & 0xFF), out)


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


def bit_fields(U: np.ndarray) -> np.ndarray | None:
    """(R, 5) int64 rows (flip, shift, mask, scale, offset) with U[r, a] =
    scale * (((a ^ flip) >> shift) & mask) + offset for every code a (flip 0, or 128 for the
    value of a two's complement code: int8(a) = (a ^ 128) - 128), or None when a factor has no
    such form. The partial-product factors all do (bit planes, high-bit fields, the code
    value), and in this form the conversion is arithmetic that vectorizes instead of one
    table load per element."""
    a = np.arange(256, dtype=np.int64)
    out = []
    for u in np.asarray(U, np.int64):
        hit = None
        for flip in (0, 128):
            b = a ^ flip
            for sh in range(8):
                for width in range(1, 9 - sh):
                    mask = (1 << width) - 1
                    s, t = int(u[(1 << sh) ^ flip] - u[flip]), int(u[flip])
                    if np.array_equal(u, s * ((b >> sh) & mask) + t):
                        hit = (flip, sh, mask, s, t)
                        break
                if hit:
                    break
            if hit:
                break
        if hit is None:
            return None
        out.append(hit)
    return np.array(out, np.int64).reshape(-1, 5)


def linear_in_fields(alpha: np.ndarray, U: np.ndarray) -> np.ndarray | None:
    """Integer (c_0 .. c_{R-1}, c_R) with alpha[a] = sum_r c_r U[r, a] + c_R exactly, or None."""
    basis = np.vstack([np.asarray(U, np.float64), np.ones((1, 256))]).T
    coef = np.rint(np.linalg.lstsq(basis, np.asarray(alpha, np.float64), rcond=None)[0]).astype(np.int64)
    rebuilt = np.asarray(U, np.int64).T @ coef[:-1] + coef[-1]
    return coef if np.array_equal(rebuilt, np.asarray(alpha, np.int64)) else None


@njit(parallel=True, cache=True)
def _convert_fields_i8(A, fields, coef, use_coef, alpha, use_alpha, want_rowsum, X):
    """`_convert` into int8 for factors in bit-field form (see `bit_fields`):
    X[m, r*K + k] = scale_r * (((A[m, k] ^ flip_r) >> shift_r) & mask_r) + offset_r. salpha[m] =
    sum_k alpha[A[m, k]], from the factor row sums when alpha is linear in the factors
    (use_coef: coef from `linear_in_fields`), else by lookup; rowsum as `_convert`."""
    M, K = A.shape
    R = fields.shape[0]
    salpha = np.zeros(M, np.int64)
    rowsum = np.zeros(M, np.int64)
    for m in prange(M):
        sa = np.int64(0)
        for r in range(R):
            fl = np.int32(fields[r, 0])
            sh = np.int32(fields[r, 1])
            mk = np.int32(fields[r, 2])
            sc = np.int32(fields[r, 3])
            of = np.int32(fields[r, 4])
            xr = X[m, r * K:(r + 1) * K]
            ar = A[m]
            s = np.int32(0)
            for k in range(uint64(K)):  # (unsigned: no wraparound selects, so it vectorizes)
                v = sc * (((np.int32(ar[k]) ^ fl) >> sh) & mk) + of
                xr[k] = np.int8(v)
                s += v
            if use_coef:
                sa += coef[r] * np.int64(s)
        if use_alpha:
            if use_coef:
                salpha[m] = sa + coef[R] * K
            else:
                s2 = 0
                for k in range(K):
                    s2 += alpha[A[m, k]]
                salpha[m] = s2
        if want_rowsum:
            s3 = np.int32(0)
            for k in range(K):
                s3 += np.int32(A[m, k])
            rowsum[m] = s3
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
def _as_i64(v):
    """int64 of an accumulator element (an exact integer, in an integer or float type)."""
    return np.int64(v)


@overload(_as_i64)
def _as_i64_ov(v):
    if isinstance(v, types.Float) and v.bitwidth == 32:
        # float32 accumulators hold |v| <= 2^24: convert through int32 (packed on AVX2)
        return lambda v: np.int64(np.int32(v))
    return lambda v: np.int64(v)


@njit(parallel=True, cache=True)
def _emit_int(acc, nm, gm, salpha, sbeta, ck, out3, row0):
    """out3[b, n, p] = gm * acc + linear terms (int64) for flat row row0 + m = b * P + p.

    acc is (M, N), or (N, M) when nm. Tiles hold whole images (M % P == 0, row0 % P == 0).
    Rows are written as contiguous runs (vectorizable).
    """
    N = out3.shape[1]
    P = out3.shape[2]
    M = acc.shape[1] if nm else acc.shape[0]
    nimg = M // P
    b0 = row0 // P
    if nm:
        for t in prange(nimg * N):
            bl = t // N
            n = t % N
            sb = sbeta[n] + ck
            ar = acc[n, bl * P:(bl + 1) * P]
            sa = salpha[bl * P:(bl + 1) * P]
            orow = out3[b0 + bl, n]
            for p in range(P):
                orow[p] = np.int64(ar[p]) * gm + sa[p] + sb
    elif P == 1:
        for m in prange(M):
            ar = acc[m]
            s = salpha[m] + ck
            for n in range(N):
                out3[b0 + m, n, 0] = np.int64(ar[n]) * gm + s + sbeta[n]
    else:  # transposing: contiguous writes, strided reads of one image's (P, N) block
        for bl in prange(nimg):
            ob = out3[b0 + bl]
            a = acc[bl * P:(bl + 1) * P]
            sa = salpha[bl * P:(bl + 1) * P]
            for n in range(N):
                sb = sbeta[n] + ck
                orow = ob[n]
                for p in range(P):
                    orow[p] = _as_i64(a[p, n]) * gm + sa[p] + sb


@njit(parallel=True, cache=True)
def _emit_float(acc, nm, gm, salpha, sbeta, ck, rowsum, zw, cterm, scale, bias, out3, row0):
    """Fused epilogue: integer accumulator gm * acc (+ linear and affine zero-point terms), then
    real = acc' * scale[n] + bias[n] in float64, rounded once to float32, written as
    out3[b, n, p] for flat output row row0 + m = b * P + p (tiles hold whole images).

    salpha and rowsum come as float64 (`_f64`): every term is an integer below 2^53, so the
    float64 sum is exactly the int64 one (the same float64(acc') as integer arithmetic gives),
    and int32 -> float64 conversions vectorize where int64 -> float64 ones do not on AVX2."""
    N = out3.shape[1]
    P = out3.shape[2]
    M = acc.shape[1] if nm else acc.shape[0]
    nimg = M // P
    b0 = row0 // P
    fgm = np.float64(gm)
    if nm:
        for t in prange(nimg * N):
            bl = t // N
            n = t % N
            sb = np.float64(sbeta[n] + cterm[n] + ck)
            z = np.float64(zw[n])
            sc = scale[n]
            bi = bias[n]
            ar = acc[n, bl * P:(bl + 1) * P]
            sa = salpha[bl * P:(bl + 1) * P]
            rs = rowsum[bl * P:(bl + 1) * P]
            orow = out3[b0 + bl, n]
            for p in range(P):
                v = np.float64(ar[p]) * fgm + sa[p] + (sb - z * rs[p])
                orow[p] = np.float32(v * sc + bi)
    elif P == 1:
        for m in prange(M):
            ar = acc[m]
            s = salpha[m] + np.float64(ck)
            r = rowsum[m]
            for n in range(N):
                v = np.float64(ar[n]) * fgm + s + (np.float64(sbeta[n] + cterm[n]) - np.float64(zw[n]) * r)
                out3[b0 + m, n, 0] = np.float32(v * scale[n] + bias[n])
    else:  # transposing: contiguous writes, strided reads of one image's (P, N) block
        for bl in prange(nimg):
            ob = out3[b0 + bl]
            a = acc[bl * P:(bl + 1) * P]
            sa = salpha[bl * P:(bl + 1) * P]
            rs = rowsum[bl * P:(bl + 1) * P]
            for n in range(N):
                sb = np.float64(sbeta[n] + cterm[n] + ck)
                z = np.float64(zw[n])
                sc = scale[n]
                bi = bias[n]
                orow = ob[n]
                for p in range(P):
                    v = np.float64(a[p, n]) * fgm + sa[p] + (sb - z * rs[p])
                    orow[p] = np.float32(v * sc + bi)


def _direct_emit(out3, row0, st, rowsum, gm, ck) -> tuple:
    """The `emit` argument of the lookup kernels writing a convolution's output directly:
    mode 1 (int64 accumulators) without an epilogue state st, mode 2 (float32) with one."""
    if st is None:
        return (1, out3, row0, gm, ck, _NO_F64, _NO_I64, _NO_I64, _NO_F64, _NO_F64)
    return (2, out3, row0, gm, ck, _f64(rowsum), st[1], st[2], st[3], st[4])


def _f64(v: np.ndarray) -> np.ndarray:
    """Exact integer terms (|v| < 2^53) as float64 for the float epilogues."""
    return np.ascontiguousarray(v, dtype=np.float64)


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


def _greedy_chunks(contrib: np.ndarray, limit: int) -> list[tuple[int, int]] | None:
    """Cut the rows of contrib (L, N) (non-negative per-row bounds, one column per output
    channel) into [i0, i1) chunks whose column sums all stay <= limit, or None when one row
    alone exceeds it. Sums run in float64 against a slightly lowered limit (rounding-safe)."""
    c = np.asarray(contrib, dtype=np.float64)
    if c.shape[0] == 0:
        return []
    lim = float(limit) * (1.0 - 1e-9)
    if c.max() > lim:
        return None
    cs = np.concatenate([np.zeros((1, c.shape[1])), np.cumsum(c, axis=0)])
    chunks = []
    s, L = 0, c.shape[0]
    while s < L:
        d = (cs[s + 1:] - cs[s]).max(axis=1)  # non-decreasing in the chunk end
        e = s + max(1, int(np.searchsorted(d, lim, side="right")))
        chunks.append((s, e))
        s = e
    return chunks


def _factor_variants(an: TableAnalysis):
    """(U, V, const, alpha, beta) variants of a factored table, preferred first: raw; the
    activation factor centred (its shift folds into beta, so no per-activation linear term
    appears); both factors centred (smallest factors, longest exact chunks)."""
    U, V, c, al, be = an.U, an.V, an.const, an.alpha, an.beta
    yield U, V, c, al, be
    mu = (U.min(axis=1) + U.max(axis=1)) // 2
    if np.any(mu):
        yield U - mu[:, None], V, c, al, be + mu @ V
    yield _centre(U, V, c, al, be)


def _factor_bounds(U: np.ndarray, V: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(R*K, N) float64: max|U_r| * |V_r[B[k, n]]|, the exactness bound of each reduction term."""
    umax = np.abs(U).max(axis=1).astype(np.float64) if U.shape[0] else np.zeros(0)
    K, N = B.shape
    return (umax[:, None, None] * np.abs(V).astype(np.float64)[:, B]).reshape(-1, N)


_IDENTITY = np.arange(256, dtype=np.int64)  # code -> unsigned code value (affine row sums)
# placeholders for unused kernel arguments (Numba needs typed arrays)
_NO_OUT = np.zeros((1, 1), np.int32)
_NO_OUT3 = np.zeros((1, 1, 1), np.int64)
_NO_I64 = np.zeros(1, np.int64)
_NO_F64 = np.zeros(1, np.float64)


# ----------------------------------------------------------------------------------------
# Lookup path
# ----------------------------------------------------------------------------------------
# Explicit SIMD row adds. LLVM's loop vectorizer guards every short row loop with run-time
# alias checks and Numba leaves the SLP vectorizer off, so the per-row adds are emitted as
# vector IR directly: acc[aoff : aoff+lanes] += g[o0 : o0+lanes] + g[o1 : ...] + ..., the rows
# converted (sign- or zero-extended) to the accumulator's integer type (int16 or int32).
def _vec_ptr(context, builder, aryty, ary, off, lanes, elt):
    data = context.make_array(aryty)(context, builder, value=ary).data
    return builder.bitcast(builder.gep(data, [off]), llvm_ir.VectorType(elt, lanes).as_pointer())


def _rowadd_codegen(lanes: int, packed: int = 0):
    """acc[aoff : aoff + lanes] += the sum of the rows g[o : o + lanes] (converted to acc's
    type). Offsets: the explicit arguments after g; or, when `packed` = n, the n rows of the
    codes packed in a uint64 w (arguments t0, w): row i at t0 + i * 256 * lanes + lanes *
    byte i of w (the tables of consecutive k follow each other in G)."""
    def codegen(context, builder, sig, args):
        aty, gty = sig.args[0], sig.args[2]
        aelt = context.get_data_type(aty.dtype)
        gelt = context.get_data_type(gty.dtype)
        vt = llvm_ir.VectorType(aelt, lanes)
        if packed:
            i64 = llvm_ir.IntType(64)
            t0, w = args[3], args[4]
            offs = []
            for i in range(packed):
                code = builder.and_(builder.lshr(w, i64(8 * i)), i64(255))
                offs.append(builder.add(builder.add(t0, i64(i * 256 * lanes)),
                                        builder.shl(code, i64(lanes.bit_length() - 1))))
        else:
            offs = args[3:]
        total = None
        for off in offs:
            v = builder.load(_vec_ptr(context, builder, gty, args[2], off, lanes, gelt), align=1)
            if gelt.width < aelt.width:
                v = (builder.sext if gty.dtype.signed else builder.zext)(v, vt)
            elif gelt.width > aelt.width:  # (typed for generality; the kernels never narrow)
                v = builder.trunc(v, vt)
            total = v if total is None else builder.add(total, v)
        pa = _vec_ptr(context, builder, aty, args[0], args[1], lanes, aelt)
        builder.store(builder.add(builder.load(pa, align=1), total), pa, align=1)
        return context.get_dummy_value()
    return codegen


def _rowadd_ok(acc, g, offs) -> bool:
    ints = (types.int16, types.uint16, types.int32)
    return (isinstance(acc, types.Array) and isinstance(g, types.Array) and acc.ndim == 1 and g.ndim == 1
            and acc.dtype in (types.int16, types.int32) and g.dtype in ints
            and all(isinstance(o, types.Integer) for o in offs))


def _make_rowadds(lanes: int):
    """(add1, add4, add8) for rows of `lanes` values: add1(acc, aoff, g, o) adds the row at o;
    addN(acc, aoff, g, t0, w) the N rows of the codes packed in w (see `_rowadd_codegen`)."""
    @intrinsic
    def add1(typingctx, acc, aoff, g, o0):
        if _rowadd_ok(acc, g, (aoff, o0)):
            return types.void(acc, aoff, g, o0), _rowadd_codegen(lanes)

    def packed(n):
        @intrinsic
        def add(typingctx, acc, aoff, g, t0, w):
            if _rowadd_ok(acc, g, (aoff, t0, w)):
                return types.void(acc, aoff, g, t0, w), _rowadd_codegen(lanes, n)
        return add
    return add1, packed(4), packed(8)


_add1_8, _add4_8, _add8_8 = _make_rowadds(8)
_add1_16, _add4_16, _add8_16 = _make_rowadds(16)
_add1_32, _add4_32, _add8_32 = _make_rowadds(32)


@intrinsic
def _load64(typingctx, ary, off):
    """The eight codes ary[off : off + 8] as one little-endian uint64 (one unaligned load)."""
    if not (isinstance(ary, types.Array) and ary.ndim == 1 and ary.dtype == types.uint8
            and isinstance(off, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, value=args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), llvm_ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)
    return types.uint64(ary, off), codegen


@intrinsic
def _prefetch(typingctx, ary, off):
    """Prefetch the cache line of ary[off] (llvm.prefetch, read, keep in all levels)."""
    if not (isinstance(ary, types.Array) and ary.ndim == 1 and isinstance(off, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, value=args[0]).data
        i8p = llvm_ir.IntType(8).as_pointer()
        i32 = llvm_ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(llvm_ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(ary, off), codegen


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


def aligned_empty(shape, dtype) -> np.ndarray:
    """np.empty on a 64-byte boundary (numpy only guarantees 16): table rows of 16 int16 are
    32 bytes, and a row split over two cache lines costs two loads."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.empty(n * dtype.itemsize + 64, np.uint8)
    s = (-buf.ctypes.data) % 64
    return buf[s:s + n * dtype.itemsize].view(dtype).reshape(shape)


# Row adds of one group of codes for every row m of a block. A group is 8 or 4 codes at
# consecutive addresses (one unaligned 64-bit load, unpacked by shifts: the byte loads were
# the kernel's bottleneck) whose tables are consecutive in G; a single code is read alone.
# Each m adds its group's rows into acc[nb m : nb m + nb]. While it runs, the lines
# [pf, pf_end) of G (the next group's tables) are prefetched, one per m.
@njit(cache=True)
def _rows8_16(src, xbs, c0, G, t0, acc, pf, pf_end, pfs):
    for mm in range(uint64(xbs.shape[0])):
        if pf < pf_end:
            _prefetch(G, pf)
            pf += pfs
        _add8_16(acc, mm << uint64(4), G, t0, _load64(src, uint64(xbs[mm]) + c0))


@njit(cache=True)
def _rows8_8(src, xbs, c0, G, t0, acc, pf, pf_end, pfs):
    for mm in range(uint64(xbs.shape[0])):
        if pf < pf_end:
            _prefetch(G, pf)
            pf += pfs
        _add8_8(acc, mm << uint64(3), G, t0, _load64(src, uint64(xbs[mm]) + c0))


@njit(cache=True)
def _rows4_16(src, xbs, c0, G, t0, acc, pf, pf_end, pfs):
    for mm in range(uint64(xbs.shape[0])):
        if pf < pf_end:
            _prefetch(G, pf)
            pf += pfs
        _add4_16(acc, mm << uint64(4), G, t0, _load64(src, uint64(xbs[mm]) + c0))


@njit(cache=True)
def _rows4_8(src, xbs, c0, G, t0, acc, pf, pf_end, pfs):
    for mm in range(uint64(xbs.shape[0])):
        if pf < pf_end:
            _prefetch(G, pf)
            pf += pfs
        _add4_8(acc, mm << uint64(3), G, t0, _load64(src, uint64(xbs[mm]) + c0))


@njit(cache=True)
def _rows8_32(src, xbs, c0, G, t0, acc, pf, pf_end, pfs):
    for mm in range(uint64(xbs.shape[0])):
        if pf < pf_end:  # (two lines per m: the next group's tables are twice as long)
            _prefetch(G, pf)
            _prefetch(G, pf + pfs)
            pf += pfs + pfs
        _add8_32(acc, mm << uint64(5), G, t0, _load64(src, uint64(xbs[mm]) + c0))


@njit(cache=True)
def _rows4_32(src, xbs, c0, G, t0, acc, pf, pf_end, pfs):
    for mm in range(uint64(xbs.shape[0])):
        if pf < pf_end:  # (two lines per m: the next group's tables are twice as long)
            _prefetch(G, pf)
            _prefetch(G, pf + pfs)
            pf += pfs + pfs
        _add4_32(acc, mm << uint64(5), G, t0, _load64(src, uint64(xbs[mm]) + c0))


@njit(cache=True)
def _rows1(src, xbs, c0, G, t0, acc, nb):
    """acc[nb m : nb m + nb] += the table row of code src[xbs[m] + c0], for every m (nb = 8, 16 or 32)."""
    if nb == 8:
        for mm in range(uint64(xbs.shape[0])):
            _add1_8(acc, mm << uint64(3), G, t0 + (uint64(src[uint64(xbs[mm]) + c0]) << uint64(3)))
    elif nb == 32:
        for mm in range(uint64(xbs.shape[0])):
            _add1_32(acc, mm << uint64(5), G, t0 + (uint64(src[uint64(xbs[mm]) + c0]) << uint64(5)))
    else:
        for mm in range(uint64(xbs.shape[0])):
            _add1_16(acc, mm << uint64(4), G, t0 + (uint64(src[uint64(xbs[mm]) + c0]) << uint64(4)))


@njit(cache=True)
def _rows(src, xbs, c0, n, nb, G, t0, acc):
    """One group of n (8, 4 or 1) codes for every m of the block (see above)."""
    pfs = uint64(64 // G.itemsize)  # elements per cache line
    row = uint64(256 * nb)
    pf = t0 + uint64(n) * row
    pf_end = min(pf + uint64(8) * row, uint64(G.size))
    if n == 8:
        if nb == 8:
            _rows8_8(src, xbs, c0, G, t0, acc, pf, pf_end, pfs)
        elif nb == 32:
            _rows8_32(src, xbs, c0, G, t0, acc, pf, pf_end, pfs)
        else:
            _rows8_16(src, xbs, c0, G, t0, acc, pf, pf_end, pfs)
    elif n == 4:
        if nb == 8:
            _rows4_8(src, xbs, c0, G, t0, acc, pf, pf_end, pfs)
        elif nb == 32:
            _rows4_32(src, xbs, c0, G, t0, acc, pf, pf_end, pfs)
        else:
            _rows4_16(src, xbs, c0, G, t0, acc, pf, pf_end, pfs)
    else:
        _rows1(src, xbs, c0, G, t0, acc, nb)


@njit(cache=True)
def _emit_block(acc, nb, q, m0, ml, tout, out, emit):
    """Write the accumulators acc[mm * nb + j] of rows m0 .. m0 + ml of column block q
    (see `_lut_gemm` for out, tout and emit)."""
    if emit[0] == 0:
        N = out.shape[0] if tout else out.shape[1]
    else:
        N = emit[1].shape[1]
    nw = min(nb, N - q * nb)
    mode = emit[0]
    if mode == 0 and not tout:
        for mm in range(ml):
            for j in range(nw):
                out[m0 + mm, q * nb + j] = acc[mm * nb + j]
        return
    # column-wise outputs: transposed in tiles of 64 rows (L1-hot across the nb columns)
    # rather than a stride-nb pass over the whole block per column
    for c0 in range(0, ml, 64):
        c1 = min(ml, c0 + 64)
        for j in range(nw):
            n = q * nb + j
            # (unsigned indices: no negative-index wraparound selects in the copy loops)
            uc0, uc1, unb, uj = uint64(c0), uint64(c1), uint64(nb), uint64(j)
            if mode == 0:
                orow = out[n, m0:m0 + ml]
                for mm in range(uc0, uc1):
                    orow[mm] = acc[mm * unb + uj]
                continue
            o3 = emit[1]
            P = o3.shape[2]
            gm = emit[3]
            b = (emit[2] + m0 + c0) // P
            p = emit[2] + m0 + c0 - b * P
            whole = p + (c1 - c0) <= P  # the tile stays in one image: a plain run
            if mode == 1:
                ck = emit[4]
                if whole:
                    orow = o3[b, n, p:p + c1 - c0]
                    for mm in range(uc0, uc1):
                        orow[mm - uc0] = np.int64(acc[mm * unb + uj]) * gm + ck
                    continue
                for mm in range(c0, c1):
                    o3[b, n, p] = np.int64(acc[mm * nb + j]) * gm + ck
                    p += 1
                    if p == P:
                        p = 0
                        b += 1
            else:
                # float64 arithmetic on exact integers < 2^53: equal to the int64 sum (see
                # `_emit_float`), and vectorizable
                rowsum = emit[5]
                fgm = np.float64(gm)
                sb = np.float64(emit[4] + emit[7][n])
                z = np.float64(emit[6][n])
                sc = emit[8][n]
                bi = emit[9][n]
                if whole:
                    orow = o3[b, n, p:p + c1 - c0]
                    rs = rowsum[m0:m0 + ml]
                    for mm in range(uc0, uc1):
                        v = np.float64(acc[mm * unb + uj]) * fgm + (sb - z * rs[mm])
                        orow[mm - uc0] = np.float32(v * sc + bi)
                    continue
                for mm in range(c0, c1):
                    v = np.float64(acc[mm * nb + j]) * fgm + (sb - z * rowsum[m0 + mm])
                    o3[b, n, p] = np.float32(v * sc + bi)
                    p += 1
                    if p == P:
                        p = 0
                        b += 1


@njit(cache=True)
def _widen(acc, a16, n):
    """acc[:n] += a16[:n] (int16 -> int32, n a multiple of 8); a16[:n] = 0."""
    i = uint64(0)
    while i < uint64(n):
        _add1_8(acc, i, a16, i)
        i += uint64(8)
    a16[:n] = 0


@njit(cache=True)
def _accumulate(src, xbs, groups, g_lo, g_hi, G, t_row, nb, L, only16, acc, a16):
    """One block's sums over groups g_lo..g_hi-1 (tables from table row t_row on): into the
    int32 acc, or, when only16, left in the int16 a16 (see `_lut_gemm`)."""
    ml = xbs.shape[0]
    row = uint64(256 * nb)
    narrow = L > 0
    if narrow:
        a16[:] = 0
    if not only16:
        acc[:] = 0
    used = 0
    for g in range(g_lo, g_hi):
        n = groups[g, 2]
        if narrow and not only16 and used + n > L:
            _widen(acc, a16, ml * nb)
            used = 0
        t0 = (t_row + uint64(groups[g, 1])) * row
        if narrow:
            _rows(src, xbs, uint64(groups[g, 0]), n, nb, G, t0, a16)
        else:
            _rows(src, xbs, uint64(groups[g, 0]), n, nb, G, t0, acc)
        used += n
    if narrow and not only16:
        _widen(acc, a16, ml * nb)


@njit(parallel=True, cache=True)
def _lut_gemm(src, xbase, groups, G, nb, nblk, mb, L, g_lo, g_hi, tout, out, emit, ws32, ws16):
    """out[m, q*nb + j] = sum over the rows k of groups g_lo..g_hi-1 of G[q, k, code(m, k), j]
    (int32); out[q*nb + j, m] when tout (the transposed layout a convolution's (B, N, P)
    output wants).

    emit = (mode, out3, row0, gm, ck, rowsum, zw, cterm, scale, bias): mode 0 fills `out`;
    modes 1 and 2 skip it and write a convolution's output directly, the accumulator of flat
    row row0 + m at out3[b, n, p] (b, p = divmod(row0 + m, P)): mode 1 the int64 value
    gm * acc + ck (= `_emit_int`), mode 2 the dequantized float32 of `_emit_float`.

    Codes: groups[g] = (offset, first row, n): the n codes of group g for row m are the bytes
    src[xbase[m] + offset + i] (i < n), and their tables are G rows first row + i (a GEMM's
    row-major codes, its codes regrouped per eight k, or a padded NHWC ifmap read in place:
    implicit im2col; see `lookup_layout_gemm`, `lookup_layout_conv`). src carries 8 readable
    bytes past its last code (a group of 4 loads 8). G holds one row of nb (8 or 16) table
    values per (column block q, k, code a): the weights are fixed, so each (m, k) adds a
    contiguous row. Loop order: one group (up to eight 256-row tables) outside, a block of m
    inside, so the tables stay hot while codes and accumulators stream; the next group's
    tables are prefetched meanwhile (they are read at random, so the hardware prefetcher
    would not). L > 0 (int16 G): rows are summed in int16 lanes, exact because
    L * max|G| <= 32767, and widened into int32 before more than L rows have been added
    (twice the lanes per instruction), or, when the whole range has at most L rows, emitted
    from int16 directly. L == 0: rows are widened as they are added. The caller bounds the
    group range's row count times max|G| below 2^31.

    Work arrays: ws32 / ws16 (workers, >= mb * nb), one row per worker, allocated once by the
    caller on 64-byte boundaries (fresh multi-100-KiB blocks per task cost page faults, which
    were most of a small layer's time). Worker w runs tasks w, w + workers, ...; every task
    writes its own outputs with integer sums, so results do not depend on the worker count.
    """
    K = G.size // (nblk * 256 * nb)
    M = xbase.shape[0]
    nmb = (M + mb - 1) // mb
    only16 = L > 0 and groups[g_lo:g_hi, 2].sum() <= L
    ntask = nblk * nmb
    workers = ws32.shape[0]
    for wk in prange(workers):
        for task in range(wk, ntask, workers):
            q = task // nmb
            m0 = (task % nmb) * mb
            ml = min(M, m0 + mb) - m0
            xbs = xbase[m0:m0 + ml]
            a16 = ws16[wk, :ml * nb]
            acc = ws32[wk, :ml * nb]
            _accumulate(src, xbs, groups, g_lo, g_hi, G, uint64(q * K), nb, L, only16, acc, a16)
            # (the column count as a literal: constant strides make the transposing writes
            # about twice as fast)
            if only16 and nb == 16:
                _emit_block(a16, 16, q, m0, ml, tout, out, emit)
            elif only16 and nb == 32:
                _emit_block(a16, 32, q, m0, ml, tout, out, emit)
            elif only16:
                _emit_block(a16, 8, q, m0, ml, tout, out, emit)
            else:
                if nb == 16:
                    _emit_block(acc, 16, q, m0, ml, tout, out, emit)
                elif nb == 32:
                    _emit_block(acc, 32, q, m0, ml, tout, out, emit)
                else:
                    _emit_block(acc, 8, q, m0, ml, tout, out, emit)
    return out


# ----------------------------------------------------------------------------------------
# Row windows: the lookup for convolutions with few output channels
# ----------------------------------------------------------------------------------------
# With N <= 8 columns a table row fills a quarter of a 32-lane vector. A stride-1 kernel row
# instead gives each input column a window: the KW*N products of its code with the kernel
# row's KW taps and N channels (lane kx*N + n), 32 lanes. Row m' = (b, oy, input column xc)
# sums the windows of its KH*C codes, which lie consecutively in a (B, Wp, Hp, C) copy of the
# padded ifmap (column-major images), so a 5x5 kernel on one channel takes five codes per m'
# instead of 25 per output, and output (oy, ox) sums lane kx*N + n of rows xc = ox + kx.
WINDOW_LANES = 32


@intrinsic
def _winsum8(typingctx, tile, toff, acc, a0, step, kw):
    """tile[toff : toff + 8] = sum over i < kw of acc[a0 + i*step : a0 + i*step + 8] (int32,
    kw a literal: the kw vector loads are unrolled)."""
    if not (isinstance(kw, types.IntegerLiteral) and isinstance(tile, types.Array) and isinstance(acc, types.Array)
            and tile.dtype == types.int32 and acc.dtype == types.int32):
        return None
    n = kw.literal_value

    def codegen(context, builder, sig, args):
        aty = sig.args[2]
        elt = context.get_data_type(aty.dtype)
        i64 = llvm_ir.IntType(64)
        total = None
        for i in range(n):
            off = builder.add(args[3], builder.mul(args[4], i64(i)))
            v = builder.load(_vec_ptr(context, builder, aty, args[2], off, 8, elt), align=4)
            total = v if total is None else builder.add(total, v)
        builder.store(total, _vec_ptr(context, builder, sig.args[0], args[0], args[1], 8, elt), align=4)
        return context.get_dummy_value()
    return types.void(tile, toff, acc, a0, step, kw), codegen


@njit(cache=True)
def _window_sums(tile, acc, base, step, Wo, KW):
    """tile[8 ox : 8 ox + 8] = sum over kx of acc[base + 32 (ox + kx) + kx N ...] (step = 32 + N)."""
    for ox in range(uint64(Wo)):
        a0 = base + (ox << uint64(5))
        t = ox << uint64(3)
        if KW == 5:
            _winsum8(tile, t, acc, a0, step, 5)
        elif KW == 3:
            _winsum8(tile, t, acc, a0, step, 3)
        elif KW == 2:
            _winsum8(tile, t, acc, a0, step, 2)
        elif KW == 4:
            _winsum8(tile, t, acc, a0, step, 4)
        elif KW == 6:
            _winsum8(tile, t, acc, a0, step, 6)
        else:
            _winsum8(tile, t, acc, a0, step, 7)


@njit(cache=True)
def _window_out_int(tile, o3, b, p, Wo, N, gm, ck):
    for n in range(N):
        orow = o3[b, n, p:p + Wo]
        un = uint64(n)
        for ox in range(uint64(Wo)):
            orow[ox] = np.int64(tile[(ox << uint64(3)) + un]) * gm + ck


@njit(cache=True)
def _window_out_float(tile, o3, b, p, Wo, N, gm, ck, rs, zw, cterm, scale, bias):
    fgm = np.float64(gm)
    for n in range(N):
        orow = o3[b, n, p:p + Wo]
        un = uint64(n)
        sb = np.float64(ck + cterm[n])
        z = np.float64(zw[n])
        sc = scale[n]
        bi = bias[n]
        for ox in range(uint64(Wo)):
            v = np.float64(tile[(ox << uint64(3)) + un]) * fgm + (sb - z * rs[ox])
            orow[ox] = np.float32(v * sc + bi)


@njit(cache=True)
def _emit_window(acc, m0, ml, Wp, Wo, N, KW, rs_lane, emit, tile, rs):
    """Write the outputs of block rows m0 .. m0 + ml (whole image rows of Wp windows) from
    their window sums, as `_emit_block` modes 1 and 2 do (emit[2] = the tile's first flat
    output row). The float epilogue's patch code sums go through rs (float64, Wo): the KW
    windows' lane rs_lane; when rs_lane == -1, emit[5] (indexed by output row within the call);
    below that, none (rs stays as the caller left it: zeros)."""
    o3 = emit[1]
    P = o3.shape[2]
    step = uint64(WINDOW_LANES + N)
    for r in range(ml // Wp):
        ir = m0 // Wp + r  # image row (b, oy) within the call
        loc = ir * Wo
        b = (emit[2] + loc) // P
        p = emit[2] + loc - b * P
        base = uint64(r * Wp * WINDOW_LANES)
        _window_sums(tile, acc, base, step, Wo, KW)
        if emit[0] == 1:
            _window_out_int(tile, o3, b, p, Wo, N, emit[3], emit[4])
            continue
        if rs_lane >= 0:
            for ox in range(uint64(Wo)):
                v = np.int32(0)
                a = base + (ox << uint64(5)) + uint64(rs_lane)
                for kx in range(uint64(KW)):
                    v += acc[a + (kx << uint64(5))]
                rs[ox] = v
        elif rs_lane == -1:
            rs[:Wo] = emit[5][loc:loc + Wo]
        _window_out_float(tile, o3, b, p, Wo, N, emit[3], emit[4], rs, emit[6], emit[7], emit[8], emit[9])


@njit(parallel=True, cache=True)
def _lut_window(src, xbase, groups, G, mb, L, Wp, Wo, N, KW, rs_lane, emit, ws32, ws16, tiles, rsums):
    """A convolution's output from row windows (see above): block rows m' in blocks of mb
    (whole image rows), summed like `_lut_gemm`'s with one 32-lane column block, then
    `_emit_window` (rs_lane >= 0: the float epilogue's patch code sums from that lane). ws32
    rows carry 32 lanes of slack (the window sums read 8 lanes from
    lane kx*N on); tiles, rsums: one (Wo*8,) int32 and one (Wo,) float64 row per worker."""
    M = xbase.shape[0]
    nmb = (M + mb - 1) // mb
    ng = groups.shape[0]
    workers = ws32.shape[0]
    for wk in prange(workers):
        for task in range(wk, nmb, workers):
            m0 = task * mb
            ml = min(M, m0 + mb) - m0
            acc = ws32[wk, :ml * WINDOW_LANES]
            _accumulate(src, xbase[m0:m0 + ml], groups, 0, ng, G, uint64(0), WINDOW_LANES, L, False, acc,
                        ws16[wk, :ml * WINDOW_LANES])
            _emit_window(acc, m0, ml, Wp, Wo, N, KW, rs_lane, emit, tiles[wk], rsums[wk])


def window_fits(N: int, KH: int, KW: int, sh: int, sw: int, dh: int, dw: int) -> str | None:
    """None when a convolution can take the row-window lookup, else why not."""
    if sw != 1 or dw != 1 or dh != 1:
        return f"needs unit column stride and dilation (stride {sh}x{sw}, dilation {dh}x{dw})"
    if not 2 <= KW <= 7:
        return f"kernel width {KW} outside 2..7"
    if N > 8 or KW * N > WINDOW_LANES:
        return f"{KW} taps x {N} channels exceed {WINDOW_LANES} lanes (or N > 8)"
    return None


def lookup_layout_window(Bn: int, C: int, Hp: int, Wp: int, KH: int, sh: int, Ho: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xbase, groups, order) of the row windows over a (B, Wp, Hp, C) padded ifmap: row
    m' = (b, oy, xc) starts at code (b, xc, oy*sh, 0) and its KH*C codes (ky, c) follow;
    order[r] = the window row (ky*C + c) of table row r, -1 under a padded group."""
    b = np.arange(Bn, dtype=np.int64)[:, None, None] * (Wp * Hp * C)
    oy = np.arange(Ho, dtype=np.int64)[None, :, None] * (sh * C)
    xc = np.arange(Wp, dtype=np.int64)[None, None, :] * (Hp * C)
    groups, rows = _runs_to_groups([(0, 0, KH * C)])
    return (b + oy + xc).reshape(-1), groups, rows


@njit(parallel=True, cache=True)
def _pad_codes_wt(x, ph, pw, pad, out):
    """out (B, Wp, Hp, C) = x (B, C, H, W) codes padded with code `pad`, column-major images."""
    Bn, C, H, W = x.shape
    Wp, Hp = out.shape[1], out.shape[2]
    for bw in prange(Bn * Wp):
        b = bw // Wp
        w = bw % Wp - pw
        o = out[b, bw % Wp]
        if w < 0 or w >= W:
            o[:, :] = pad
            continue
        o[:ph, :] = pad
        o[ph + H:, :] = pad
        for c in range(C):
            xc = x[b, c]
            for h in range(H):
                o[ph + h, c] = xc[h, w]
    return out


LOOKUP_NB32 = True


def _lookup_block(N: int) -> int:
    """Column block of the lookup kernel: 16 columns (a row of 16 int16 is one 32-byte vector;
    a 256-row table is 8 KiB), 32 when N % 32 == 0 (one 64-byte row, half the row loads per
    column), 8 for narrow layers (less padding)."""
    if LOOKUP_NB32 and N % 32 == 0:
        return 32
    return 8 if N <= 8 else 16


def narrow_lut(table: np.ndarray):
    """(offset, scale, rows): T = offset + scale * G with int16 G such that `rows` (>= 4) rows
    sum exactly in int16, or None. Partial-product designs (truncation, broken array) drop
    low-weight terms, so their tables are multiples of 2^t with a short range."""
    t = np.asarray(table, dtype=np.int64)
    lo, hi = int(t.min()), int(t.max())
    g = int(np.gcd.reduce((t - lo).ravel())) or 1
    mid = (hi - lo) // g // 2
    gmax = max(mid, (hi - lo) // g - mid, 1)
    rows = 32767 // gmax // 4 * 4
    if rows < 8:
        return None
    return lo + g * mid, g, rows


# `_load64` unpacks codes little-endian (byte i of the word is the code at offset + i); on a
# big-endian machine every group is a single code instead
_PACKED = sys.byteorder == "little"


# Tail of a run after its groups of eight: r leftover codes (r = 1..7) are covered by one
# more group of n codes (r -> (n, padded)), then single codes. A padded group reads codes past
# the run into table rows of zeros (those bytes are real ones of the source, the next patch's
# or the 8 readable ones past its end, and add nothing). Measured per m (ns, 16-column int16
# rows): a group of eight 4.5, of four 2.7, a single code 1.4 (the pass over the block costs
# most of a single), so three codes take a padded four and six or seven a padded eight.
_TAIL_GROUP = {3: (4, True), 4: (4, False), 5: (4, False), 6: (8, True), 7: (8, True)}
LOOKUP_PAD_RUNS = True  # False: no padded groups (a group of four where r >= 4, then singles)


def _runs_to_groups(runs) -> tuple[np.ndarray, np.ndarray]:
    """Runs (offset, first row, length) of codes at consecutive addresses whose tables are
    consecutive rows -> (groups, rows): the lookup kernel's groups (offset, first row, n) of
    n = 8, 4 or 1 codes, and for each of its table rows the run row it holds (-1: a zero row
    under a padded group, see `_TAIL_GROUP`)."""
    out, rows = [], []

    def group(off, r0, k, real):
        out.append((off, len(rows), k))
        rows.extend(list(range(r0, r0 + real)) + [-1] * (k - real))

    for off, r0, n in runs:
        i = 0
        while _PACKED and n - i >= 8:
            group(off + i, r0 + i, 8, 8)
            i += 8
        k, padded = _TAIL_GROUP.get(n - i, (0, False)) if _PACKED else (0, False)
        if padded and not LOOKUP_PAD_RUNS:
            k, padded = (4, False) if n - i >= 4 else (0, False)
        if k:
            real = min(k, n - i)
            group(off + i, r0 + i, k, real)
            i += real
        for j in range(i, n):
            group(off + j, r0 + j, 1, 1)
    return np.array(out, np.int64).reshape(-1, 3), np.array(rows, np.int64)


def lookup_layout_gemm(M: int, K: int, interleaved: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(xbase, groups, order) of an (M, K) code matrix for `_lut_gemm`: row-major (code (m, k)
    at m*K + k), or, when `interleaved` (K % 8 == 0), regrouped per eight k as (K/8, M, 8)
    (code (m, k) at (k//8)*8M + 8m + k%8), where each group of eight reads one sequential
    stream. order: the k of each table row (-1: a zero row), or None for k order."""
    if interleaved:
        if K % 8:
            raise ValueError(f"the interleaved layout needs K % 8 == 0, got K={K}")
        g = np.arange(K // 8, dtype=np.int64)
        return np.arange(M, dtype=np.int64) * 8, np.stack([g * 8 * M, g * 8, np.full_like(g, 8)], axis=1), None
    groups, rows = _runs_to_groups([(0, 0, K)])
    order = None if rows.size == K and np.array_equal(rows, np.arange(K)) else rows
    return np.arange(M, dtype=np.int64) * K, groups, order


def lookup_layout_conv(Bn: int, C: int, Hp: int, Wp: int, KH: int, KW: int, sh: int, sw: int,
                       dh: int, dw: int, Ho: int, Wo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xbase, groups, order) addressing the im2col matrix of a padded NHWC ifmap (B, Hp, Wp, C)
    in place (implicit im2col). Patch m = (b, oh, ow) starts at xbase[m]. The table rows run in
    (i, j, c) order, row r holding weight position k = order[r] (k = (c, i, j), the weight
    matrix's order; -1: a zero row under a padded group): in NHWC the KW*C codes of a kernel
    row are consecutive bytes (dw = 1; otherwise each tap's C codes), so they load eight at a
    time."""
    b = np.arange(Bn, dtype=np.int64)[:, None, None] * (Hp * Wp * C)
    oh = np.arange(Ho, dtype=np.int64)[None, :, None] * (sh * Wp * C)
    ow = np.arange(Wo, dtype=np.int64)[None, None, :] * (sw * C)
    i, j, c = np.meshgrid(np.arange(KH), np.arange(KW), np.arange(C), indexing="ij")
    order = (c * KH * KW + i * KW + j).reshape(-1).astype(np.int64)
    if dw == 1:
        runs = [(i * dh * Wp * C, i * KW * C, KW * C) for i in range(KH)]
    else:
        runs = [(i * dh * Wp * C + j * dw * C, (i * KW + j) * C, C) for i in range(KH) for j in range(KW)]
    groups, rows = _runs_to_groups(runs)
    return (b + oh + ow).reshape(-1), groups, np.where(rows >= 0, order[np.maximum(rows, 0)], -1)


@njit(parallel=True, cache=True)
def _pad_codes_nhwc(x, ph, pw, pad, out):
    """out (B, Hp, Wp, C) = x (B, C, H, W) codes (C-contiguous) in NHWC order, padded with
    code `pad` (flat unsigned indexing: this pass is a fair share of a small layer's time)."""
    Bn, C, H, W = x.shape
    Hp, Wp = out.shape[1], out.shape[2]
    flat = out.reshape(-1)
    xf = x.reshape(-1)
    cu = uint64(C)
    for bh in prange(Bn * Hp):
        b = bh // Hp
        h = bh % Hp - ph
        base = uint64(bh * Wp * C)
        if h < 0 or h >= H:
            flat[base:base + uint64(Wp * C)] = pad
            continue
        flat[base:base + uint64(pw * C)] = pad
        flat[base + uint64((pw + W) * C):base + uint64(Wp * C)] = pad
        o = base + uint64(pw * C)
        for c in range(C):
            src = uint64(((b * C + c) * H + h) * W)
            d = o + uint64(c)
            for w in range(uint64(W)):
                flat[d] = xf[src + w]
                d += cu
    return out


# ----------------------------------------------------------------------------------------
# Factored convolutions through torch's direct convolution
# ----------------------------------------------------------------------------------------
# A factor U_r[a] is a function of one activation code, so converting the padded ifmap
# plane by plane (before im2col) gives the conv's input: sum_r U_r[x] (*) V_r[w] is then one
# float32 convolution with R*C input channels and no patch matrix at all. oneDNN's direct
# convolution (what torch uses on CPU; NNPACK's Winograd/FFT is switched off around the call)
# accumulates exact products in some order; every partial sum is a sub-sum of the exact
# products, bounded per output channel by sum |U| |V| <= 2^24 (checked per layer on its
# actual weights), so it is an exactly represented integer whatever the order.
_TORCH_STATE: dict = {}


def _torch_conv():
    """(torch, F.conv2d) when torch is importable and float32 convolutions are IEEE, else None."""
    if "mod" not in _TORCH_STATE:
        try:
            import torch
            import torch.nn.functional as tF
            _TORCH_STATE["mod"] = (torch, tF.conv2d)
        except ImportError:  # torch is an optional dependency: the BLAS path is used instead
            _TORCH_STATE["mod"] = None
    mod = _TORCH_STATE["mod"]
    if mod is None:
        return None
    mk = mod[0].backends.mkldnn
    for prec in (getattr(mk, "fp32_precision", "none"), getattr(getattr(mk, "conv", None), "fp32_precision", "none")):
        if prec not in ("none", "ieee"):  # bf16 / tf32 math modes round the products
            return None
    return mod


# ----------------------------------------------------------------------------------------
# int8 backend of the factored paths (torch._int_mm: oneDNN's integer GEMM, VNNI on x86)
# ----------------------------------------------------------------------------------------
# Factors that fit int8 (after shifting each by a constant and moving a common divisor from
# one side to the other) run as one int8 x int8 -> int32 GEMM: integer arithmetic, so exact
# whenever the int32 sums cannot overflow (the reduction is cut into chunks whose bound
# sum_k max|U| |V| stays below 2^31, summed in int64). On CPUs without VNNI, oneDNN's AVX2
# kernels sum pairs of u8 x s8 products in saturating int16 lanes, which is not exact, so the
# backend is used only after a self-test on worst-case operands passes on this machine.
INT8_NS_PER_MAC = 0.0056  # int8 GEMM, per MAC (N counted as at least 16)
INT8_NS_PER_ROW = 8.0  # int8 GEMM, per output row (dominates narrow layers)
CONVERT_I8_NS = 0.42  # codes -> int8 factors, per element and factor
CONVERT_FIELD_NS = 0.15  # the same for factors in bit-field form (`bit_fields`: arithmetic, vectorized)
I32_LIMIT = 2**31 - 1
_INT8_STATE: dict = {}


def _int8_selftest(torch) -> bool:
    """torch._int_mm exact on extreme and random operands (saturating kernels fail this)."""
    rng = np.random.default_rng(0)
    cases = [(np.full((24, 2048), a, np.int8), np.full((2048, 24), b, np.int8))
             for a, b in ((-128, -128), (127, 127), (-128, 127), (127, -128))]
    alt = np.where(np.arange(2048) % 2, 127, -128).astype(np.int8)
    cases.append((np.tile(alt, (24, 1)), np.tile(alt[:, None], (1, 24))))
    cases.append((rng.integers(-128, 128, (37, 301)).astype(np.int8), rng.integers(-128, 128, (301, 19)).astype(np.int8)))
    cases.append((rng.integers(-128, 128, (1, 5)).astype(np.int8), rng.integers(-128, 128, (5, 1)).astype(np.int8)))
    for a, b in cases:
        got = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        if not np.array_equal(got.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64)):
            return False
    return True


def int8_gemm():
    """torch when its int8 GEMM is importable and passed the exactness self-test here, else
    None ($COSIM_INT8_GEMM=0 switches the backend off)."""
    if "mod" not in _INT8_STATE:
        import os
        mod = None
        if os.environ.get("COSIM_INT8_GEMM", "1") != "0":
            try:
                import torch
                if hasattr(torch, "_int_mm") and _int8_selftest(torch):
                    mod = torch
            except Exception:  # torch missing, or _int_mm unsupported on this build / CPU
                mod = None
        _INT8_STATE["mod"] = mod
    return _INT8_STATE["mod"]


def _dense_i8(torch, t):
    """t with row-major strides (numpy and torch call a (1, K) view of a column "contiguous"
    with any leading stride, which oneDNN then reads as the row pitch)."""
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(t)
    if t.stride() != (t.shape[1], 1):
        t = torch.empty(tuple(t.shape), dtype=t.dtype).copy_(t)
    return t


def _int8_variant(an: TableAnalysis):
    """(U, V, const, alpha, beta) with every factor in int8 range representing the same table,
    or None: per factor, a common divisor moves between the sides until both value spans are
    <= 255, then each side is shifted into [-128, 127] (shifts fold into the linear terms)."""
    if not an.factored:
        return None
    U, V = an.U.astype(np.int64).copy(), an.V.astype(np.int64).copy()
    c, al, be = int(an.const), an.alpha.astype(np.int64).copy(), an.beta.astype(np.int64).copy()

    def span(x):
        return int(x.max()) - int(x.min())

    for r in range(U.shape[0]):
        for src, dst in ((V, U), (U, V)):
            if span(src[r]) <= 255:
                continue
            g = int(np.gcd.reduce(np.abs(src[r]))) or 1
            d = next((d for d in range(max(2, -(-span(src[r]) // 255)), g + 1) if g % d == 0), None)
            if d is None or span(dst[r]) * d > 255:
                continue
            src[r] //= d
            dst[r] *= d
        if span(U[r]) > 255 or span(V[r]) > 255:
            return None
        mu = 0 if U[r].min() >= -128 and U[r].max() <= 127 else int(U[r].min()) + 128
        nu = 0 if V[r].min() >= -128 and V[r].max() <= 127 else int(V[r].min()) + 128
        be += mu * V[r]  # (u' + mu)(v' + nu) = u' v' + nu u' + mu v
        U[r] -= mu
        V[r] -= nu
        al += nu * U[r]
    return U, V, c, al, be


def _int8_cost(an: TableAnalysis, M: int, K: int, N: int) -> float:
    r = max(an.rank, 1)
    conv = CONVERT_FIELD_NS if bit_fields(an.int8[0]) is not None else CONVERT_I8_NS
    return (INT8_NS_PER_MAC * r * M * K * max(N, 16) + INT8_NS_PER_ROW * M + conv * r * M * K
            + LUT_OUT_NS * M * N)


@njit(parallel=True, cache=True)
def _convert_planes(x, lut, out):
    """out[b, h, w, r*C + c] = lut[r, x[b, c, h, w]]: the factor planes of an ifmap, channels
    last (oneDNN's direct convolution reads NHWC without reorders)."""
    Bn, C, H, W = x.shape
    R = lut.shape[0]
    for bh in prange(Bn * H):
        b = bh // H
        h = bh % H
        o = out[b, h]
        for r in range(R):
            lr = lut[r]
            for c in range(C):
                xr = x[b, c, h]
                for w in range(W):
                    o[w, r * C + c] = lr[xr[w]]
    return out


@njit(parallel=True, cache=True)
def _convert_planes_nchw(x, lut, out):
    """out[b, r*C + c, h, w] = lut[r, x[b, c, h, w]]: the factor planes of an ifmap, NCHW."""
    Bn, C, H, W = x.shape
    R = lut.shape[0]
    for t in prange(Bn * C):
        b = t // C
        c = t % C
        xp = x[b, c]
        for r in range(R):
            lr = lut[r]
            o = out[b, r * C + c]
            for h in range(H):
                for w in range(W):
                    o[h, w] = lr[xp[h, w]]
    return out


@njit(cache=True)
def _edge_sum(top, bot, w0, KW, W, rows, taps, lp):
    """One patch sum of `_patch_sums` whose columns [w0, w0 + KW) cross the ifmap's edge: the
    box of the summed-area rows top / bot clipped to [0, W), plus lp per padded tap."""
    c0, c1 = max(w0, 0), min(w0 + KW, W)
    if rows and c1 > c0:
        return bot[c1] - top[c1] - bot[c0] + top[c0] + (taps - rows * (c1 - c0)) * lp
    return taps * lp


@njit(parallel=True, cache=True)
def _patch_sums(x, ph, pw, pad, lut, KH, KW, sh, sw, dh, dw, Ho, Wo):
    """s[(b*Ho + oh)*Wo + ow] = sum over the patch (c, i, j) of lut[code], the codes of x (B, C,
    H, W) padded by (ph, pw) with code `pad` (padding is virtual: no padded copy). Undilated
    patches are boxes: four reads of a summed-area table of the channel-summed plane, plus
    lut[pad] * C per padded tap (the direct sum over taps cost as much as a small layer); the
    columns whose patches lie inside the ifmap take the four reads without clipping. The
    channel sum reads codes directly when lut is the identity (the affine row sums)."""
    Bn, C, H, W = x.shape
    out = np.empty(Bn * Ho * Wo, np.int64)
    lp = lut[pad] * C
    taps = KH * KW
    identity = True
    for i in range(256):
        if lut[i] != i:
            identity = False
            break
    lo = min(Wo, max(0, -(-pw // sw)))  # output columns [lo, hi): patch inside horizontally
    hi = max(lo, min(Wo, (W - KW + pw) // sw + 1)) if W >= KW - pw else lo
    for b in prange(Bn):
        plane = np.zeros((H, W), np.int64)
        for c in range(C):
            for h in range(H):
                pr = plane[h]
                xr = x[b, c, h]
                if identity:
                    for w in range(W):
                        pr[w] += np.int64(xr[w])
                else:
                    for w in range(W):
                        pr[w] += lut[xr[w]]
        ob = out[b * Ho * Wo:(b + 1) * Ho * Wo]
        if dh == 1 and dw == 1:
            sat = np.zeros((H + 1, W + 1), np.int64)  # sat[h, w] = sum of plane[:h, :w]
            for h in range(H):
                run = np.int64(0)
                for w in range(W):
                    run += plane[h, w]
                    sat[h + 1, w + 1] = sat[h, w + 1] + run
            for oh in range(Ho):
                h0 = oh * sh - ph
                a0, a1 = max(h0, 0), min(h0 + KH, H)
                rows = a1 - a0 if a1 > a0 else 0
                top = sat[a0] if rows else sat[0]
                bot = sat[a1] if rows else sat[0]
                orow = ob[oh * Wo:(oh + 1) * Wo]
                base = (taps - rows * KW) * lp
                for q in range(lo, hi):
                    w0 = q * sw - pw
                    orow[q] = bot[w0 + KW] - top[w0 + KW] - bot[w0] + top[w0] + base
                for ow in range(lo):
                    orow[ow] = _edge_sum(top, bot, ow * sw - pw, KW, W, rows, taps, lp)
                for ow in range(max(lo, hi), Wo):
                    orow[ow] = _edge_sum(top, bot, ow * sw - pw, KW, W, rows, taps, lp)
        else:
            for oh in range(Ho):
                for ow in range(Wo):
                    h0 = oh * sh - ph
                    w0 = ow * sw - pw
                    s = np.int64(0)
                    for i in range(KH):
                        h = h0 + i * dh
                        for j in range(KW):
                            w = w0 + j * dw
                            if 0 <= h < H and 0 <= w < W:
                                s += plane[h, w]
                            else:
                                s += lp
                    ob[oh * Wo + ow] = s
    return out


@njit(parallel=True, cache=True)
def _emit_bnp_int(Y, salpha, sbeta, ck, out3, b0):
    """out3[b0 + b, n, p] = Y[b, n, p] (an exact integer in float) + salpha[b*P + p] + sbeta[n] + ck."""
    Bt, N, P = Y.shape
    for t in prange(Bt * N):
        b = t // N
        n = t % N
        sb = sbeta[n] + ck
        yr = Y[b, n]
        sa = salpha[b * P:(b + 1) * P]
        orow = out3[b0 + b, n]
        for p in range(P):
            orow[p] = np.int64(yr[p]) + sa[p] + sb


@njit(parallel=True, cache=True)
def _emit_bnp_float(Y, salpha, sbeta, ck, rowsum, zw, cterm, scale, bias, out3, b0):
    """The fused epilogue of `_emit_float` for a (B, N, P) accumulator (salpha, rowsum float64)."""
    Bt, N, P = Y.shape
    for t in prange(Bt * N):
        b = t // N
        n = t % N
        sb = np.float64(sbeta[n] + cterm[n] + ck)
        z = np.float64(zw[n])
        sc = scale[n]
        bi = bias[n]
        yr = Y[b, n]
        sa = salpha[b * P:(b + 1) * P]
        rs = rowsum[b * P:(b + 1) * P]
        orow = out3[b0 + b, n]
        for p in range(P):
            v = np.float64(yr[p]) + sa[p] + (sb - z * rs[p])
            orow[p] = np.float32(v * sc + bi)


# ----------------------------------------------------------------------------------------
# Per-layer prepared GEMM (weights fixed), path choice
# ----------------------------------------------------------------------------------------
FACTORED = ("exact", "bitplane", "lowrank")


def _lookup_cost(an: TableAnalysis, M: int, K: int, N: int) -> float:
    nb = _lookup_block(N)
    nblk = -(-N // nb)
    per = (LUT_NARROW_NS if an.narrow is not None else LUT_WIDE_NS) * {8: LUT_NB8_FACTOR, 32: LUT_NB32_FACTOR}.get(nb, 1.0)
    return per * M * K * nblk + LUT_ROW_BYTE_NS * K * 256 * nblk * nb * 2 + LUT_OUT_NS * M * N


def estimate_costs(an: TableAnalysis, M: int, K: int, N: int, conv_in: int = 0,
                   int8: bool | None = None) -> dict[str, float]:
    """Modelled time (ns) of each available path for an M x K x N GEMM (see the constants above).

    conv_in > 0: the GEMM is a convolution whose padded input has conv_in elements and torch
    is available, so factored tables run as one direct convolution on R factor planes.
    int8 (None: whenever `int8_gemm` works here and the factors fit): also the factored path
    on the int8 backend, keyed "<kind>/int8" (GEMMs only: for convolutions its im2col and
    operand conversion measured 2-7x slower than the direct convolution, so it is offered
    only when pinned with factored_backend="int8").
    """
    costs = {"lookup": _lookup_cost(an, M, K, N)}
    if int8 is None:
        int8 = int8_gemm() is not None
    if int8 and not conv_in and an.int8 is not None:
        costs[an.kind + "/int8"] = _int8_cost(an, M, K, N)
    if an.factored:
        r = max(an.rank, 1)
        if conv_in:
            out_ns = CONV_OUT_NS if N % 8 == 0 else CONV_OUT_BLOCKED_NS
            costs[an.kind] = (CONV_NS_PER_MAC * r * M * K * -(-N // 8) * 8 + CONVERT_PLANE_NS * r * conv_in
                              + out_ns * M * N)
        else:
            costs[an.kind] = (GEMM_NS_PER_MAC * r * M * K * max(N, 16) + CONVERT_NS_PER_ELEM * r * M * K
                              + LUT_OUT_NS * M * N)
    return costs


def choose_path(an: TableAnalysis, M: int, K: int, N: int, conv_in: int = 0,
                int8: bool | None = None) -> tuple[str, str]:
    """(path, reason): the cheapest modelled exact path for this table and GEMM shape; a
    factored path on the int8 backend is named "<kind>/int8"."""
    costs = estimate_costs(an, M, K, N, conv_in, int8)
    best = min(costs, key=costs.get)
    reason = ", ".join(f"{k}~{v / 1e6:.2f}ms" for k, v in sorted(costs.items(), key=lambda kv: kv[1]))
    return best, f"{an.note}; model: {reason}"


# layer geometry (input C, H, W; factor rank; plane groups; N; padding; geometry) -> the
# direct convolution's faster plane layout, "nhwc" or "nchw" (see `PreparedGemm._run_conv`)
_CONV_LAYOUTS: dict = {}
# convolutions whose modelled lookup and direct-convolution costs are within this factor are
# timed instead, once per layer geometry and table kind (`PreparedGemm._timed_conv_path`): the
# model's constants come from one machine and are a few tens of percent off elsewhere
CONV_PATH_TIMING_BAND = 1.6
_CONV_PATHS: dict = {}


class PreparedGemm:
    """One layer's LUT GEMM with its weights fixed: C = sum_k T[A[m,k], B[k,n]] for any A.

    path: "auto" (per-call choice by `choose_path`), or one of PATHS (an unavailable factored
    path raises; "lowrank" accepts any factored table), or "naive" / "reference" for the plain
    kernels. Large calls are processed in row tiles so converted operands stay in cache.
    `lookup_variant` ("auto", "narrow": int16 sums, "wide": int32 sums), `conv_backend`
    ("auto": torch's direct convolution when importable, "blas": im2col + BLAS) and
    `factored_backend` ("auto": by the cost model; "float": float32/64 BLAS; "int8": torch's
    integer GEMM, see `int8_gemm`) and `conv_layout` (the direct convolution's factor planes:
    "auto": the faster of the two, timed once per layer geometry; "nhwc"; "nchw") and
    `lookup_layout` (a convolution's lookup: "auto": row windows where `window_fits`, else
    "patches", the implicit im2col) pin an implementation (tests hold each one to the reference).
    """

    TILE_BYTES = 4 << 20  # converted-operand bytes per row tile

    def __init__(self, b_codes, mult, path: str = "auto", signed: bool | None = None,
                 lookup_variant: str = "auto", conv_backend: str = "auto", factored_backend: str = "auto",
                 conv_layout: str = "auto", lookup_layout: str = "auto"):
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
        if lookup_variant not in ("auto", "narrow", "wide"):
            raise ValueError(f"lookup_variant must be 'auto', 'narrow' or 'wide', got {lookup_variant!r}")
        if conv_backend not in ("auto", "blas"):
            raise ValueError(f"conv_backend must be 'auto' or 'blas', got {conv_backend!r}")
        if conv_layout not in ("auto", "nhwc", "nchw"):
            raise ValueError(f"conv_layout must be 'auto', 'nhwc' or 'nchw', got {conv_layout!r}")
        if lookup_layout not in ("auto", "patches", "window"):
            raise ValueError(f"lookup_layout must be 'auto', 'patches' or 'window', got {lookup_layout!r}")
        if factored_backend not in ("auto", "float", "int8"):
            raise ValueError(f"factored_backend must be 'auto', 'float' or 'int8', got {factored_backend!r}")
        if factored_backend == "int8":
            if int8_gemm() is None:
                raise ValueError("factored_backend='int8': torch._int_mm is missing or not exact on this CPU")
            if self.analysis.int8 is None:
                raise ValueError(f"multiplier {self.mult.name!r}: factors do not fit int8 "
                                 f"(kind {self.analysis.kind!r})")
        if lookup_variant == "narrow" and self.analysis.narrow is None:
            raise ValueError(f"multiplier {self.mult.name!r}: table too wide for the int16 lookup")
        self.requested = path
        self.K, self.N = self.B.shape
        self.lookup_variant = lookup_variant
        self.conv_backend = conv_backend
        self.factored_backend = factored_backend
        self.conv_layout = conv_layout
        self.lookup_layout = lookup_layout
        self.last_conv_layout = None
        self.last_lookup_layout = None
        self._factored = None
        self._int8 = None
        self._rows: dict = {}  # lookup weight rows per table-row order
        self._conv: dict = {}
        self._paths: dict = {}
        self._bt = None
        self._wsum = None
        self._ws: dict = {}
        self.last_path = None
        self.last_backend = None
        self.last_reason = ""

    # -- factored ------------------------------------------------------------------------
    def _prepare_factored(self):
        if self._factored is not None:
            return self._factored
        an, K, N = self.analysis, self.K, self.N
        best = None
        # keep the factor variant with the fewest exact float32 chunks (bounds from the
        # layer's actual weights), the first listed on a tie
        for U, V, c, al, be in _factor_variants(an):
            ch = _greedy_chunks(_factor_bounds(U, V, self.B), F32_EXACT)
            if ch is not None and (best is None or len(ch) < len(best[0])):
                best = (ch, np.float32, U, V, c, al, be)
        if best is None or len(best[0]) > 8 * max(an.rank, 1):
            U, V, c, al, be = _centre(an.U, an.V, an.const, an.alpha, an.beta)
            ch = _greedy_chunks(_factor_bounds(U, V, self.B), F64_EXACT)
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

    # -- factored convolution (torch) ----------------------------------------------------
    def _conv_plan(self, C: int, kh: int, kw: int, pad_code: int | None):
        """Weights and exactness plan of the direct-convolution path, or None (then im2col + BLAS).

        pad_code (padded layers): each factor is shifted to be zero at the pad code (the shift
        folds into beta), so torch's zero padding stands for the padded codes.
        """
        key = (C, kh, kw, pad_code)
        if key in self._conv:
            return self._conv[key]
        plan = None
        tc = _torch_conv() if self.conv_backend == "auto" else None
        an, K, N = self.analysis, self.K, self.N
        if tc is not None and an.factored and C * kh * kw == K:
            best = None
            for U, V, c, al, be in _factor_variants(an):
                if pad_code is not None:
                    mu = U[:, pad_code].copy()
                    U, be = U - mu[:, None], be + mu @ V
                R = U.shape[0]
                # bound per input plane (r, c) and output channel: sum_ij max|U_r| |V_r[w]|
                per_k = _factor_bounds(U, V, self.B).reshape(R, C, kh * kw, N).sum(axis=2)
                groups = _greedy_chunks(per_k.reshape(R * C, N), F32_EXACT)
                if groups is None:
                    continue
                score = (len(groups), bool(np.any(al)))
                if best is None or score < best[0]:
                    best = (score, groups, U, V, c, al, be)
            if best is not None and len(best[1]) <= 4:
                _, groups, U, V, c, al, be = best
                R = U.shape[0]
                W = V[:, self.B].reshape(R, C, kh, kw, N).transpose(4, 0, 1, 2, 3).reshape(N, R * C, kh, kw)
                W = W.astype(np.float32)
                torch = tc[0]
                plan = {"R": R, "lut": np.ascontiguousarray(U.astype(np.float32)),
                        "wts": [(g0, g1, torch.from_numpy(np.ascontiguousarray(W[:, g0:g1])).contiguous(
                            memory_format=torch.channels_last)) for g0, g1 in groups],
                        "wts_nchw": [(g0, g1, torch.from_numpy(np.ascontiguousarray(W[:, g0:g1])))
                                     for g0, g1 in groups],
                        "alpha": np.ascontiguousarray(al, dtype=np.int64) if np.any(al) else None,
                        "sbeta": np.ascontiguousarray(be[self.B].sum(axis=0) + K * int(c), dtype=np.int64)}
        self._conv[key] = plan
        return plan

    def _run_conv(self, plan, x, padding, pad_code, geom, st, want_rs, out, row0):
        """The direct-convolution path on the factor planes, in the layout pinned by
        `conv_layout` or, under "auto", the faster one for this layer geometry. The first call
        of a geometry runs both once (oneDNN builds its kernels), times each three times,
        alternating, and keeps the faster minimum in `_CONV_LAYOUTS` for every later call of
        any layer of that geometry. Results are identical either way (exact integers in
        float32); oneDNN's channels-last kernels win on most layers, NCHW on some (LeNet-5's,
        where the output then needs no transposing pass).
        """
        layout = self.conv_layout
        if layout == "auto":
            # (keyed by geometry, not weights: every layer of this shape, e.g. a search's
            # candidates, reuses the choice)
            key = (x.shape[1:], plan["R"], len(plan["wts"]), self.N, tuple(padding), tuple(geom))
            layout = _CONV_LAYOUTS.get(key)
            if layout is None:
                best = {"nhwc": np.inf, "nchw": np.inf}
                for rnd in range(4):
                    for lay in best:
                        t0 = time.perf_counter()
                        self._run_conv_in(lay, plan, x, padding, pad_code, geom, st, want_rs, out, row0)
                        if rnd:
                            best[lay] = min(best[lay], time.perf_counter() - t0)
                layout = _CONV_LAYOUTS[key] = min(best, key=best.get)
                if layout == "nchw":  # (out already holds the answer of the last, NCHW, run)
                    self.last_conv_layout = layout
                    return out
        return self._run_conv_in(layout, plan, x, padding, pad_code, geom, st, want_rs, out, row0)

    def _run_conv_in(self, layout, plan, x, padding, pad_code, geom, st, want_rs, out, row0):
        KH, KW, sh, sw, dh, dw, Ho, Wo = geom
        Bt, C = x.shape[:2]
        ph, pw = padding
        P = Ho * Wo
        torch, conv2d = _torch_conv()
        RC = plan["R"] * C
        if layout == "nhwc":
            XU = self._buffer("XU", (Bt,) + x.shape[2:] + (RC,), np.float32)
            _convert_planes(x, plan["lut"], XU)
            xt = torch.from_numpy(XU).permute(0, 3, 1, 2)  # channels-last NCHW view
            wts = plan["wts"]
        else:
            XU = self._buffer("XU_nchw", (Bt, RC) + x.shape[2:], np.float32)
            xt = torch.from_numpy(_convert_planes_nchw(x, plan["lut"], XU))
            wts = plan["wts_nchw"]
        self.last_conv_layout = layout
        nnpack = torch._C._get_nnpack_enabled()
        if nnpack:  # where oneDNN declines a shape, NNPACK might take it with Winograd/FFT transforms
            torch._C._set_nnpack_enabled(False)
        try:
            with torch.no_grad():
                ys = [conv2d(xt if g1 - g0 == RC else xt[:, g0:g1], wt, stride=(sh, sw), padding=(ph, pw),
                             dilation=(dh, dw)) for g0, g1, wt in wts]
        finally:
            if nnpack:
                torch._C._set_nnpack_enabled(True)
        # oneDNN answers channels-last (M, N) rows, or NCHW when it chose a blocked layout
        nhwc = all(y.permute(0, 2, 3, 1).is_contiguous() for y in ys)
        Y = None
        for y in ys:
            y = (y.permute(0, 2, 3, 1).numpy().reshape(Bt * P, self.N) if nhwc
                 else y.contiguous().numpy().reshape(Bt, self.N, P))
            Y = y if Y is None else Y.astype(np.float64) + y  # chunk sums: exact in float64
        zero_m = self._buffer("zero_m", (Bt * P,), np.int64)
        zero_m[:] = 0
        salpha = (_patch_sums(x, ph, pw, pad_code, plan["alpha"], KH, KW, sh, sw, dh, dw, Ho, Wo)
                  if plan["alpha"] is not None else zero_m)
        rs = (_patch_sums(x, ph, pw, pad_code, _IDENTITY, KH, KW, sh, sw, dh, dw, Ho, Wo) if want_rs
              else zero_m)
        if nhwc:
            self._emit(Y, False, np.int64(1), salpha, plan["sbeta"], np.int64(0), rs, st, out, row0)
        elif st is None:
            _emit_bnp_int(Y, salpha, plan["sbeta"], np.int64(0), out, row0 // P)
        else:
            _emit_bnp_float(Y, _f64(salpha), plan["sbeta"], np.int64(0), _f64(rs), st[1], st[2], st[3], st[4], out,
                            row0 // P)
        return out

    # -- lookup --------------------------------------------------------------------------
    def _prepare_rows(self, order=None, window=None):
        """The lookup kernel's weight rows G (and its constants), with the table rows in the
        order `order` (k of row r = order[r]; None: k order), built once per order. window =
        (C, KH, KW): the row windows' rows instead (row ky*C + c, lane kx*N + n; when KW*N < 32,
        lane 31 holds the code value, so windows also sum the patch's codes for the affine
        epilogue)."""
        key = (None if order is None else order.tobytes(), window)
        rows = self._rows.get(key)
        if rows is None:
            t = self.mult.table
            nl = self.analysis.narrow if self.lookup_variant != "wide" else None
            if nl is not None:
                off, g, L = nl
                tab = ((t.astype(np.int64) - off) // g).astype(np.int16)
            else:
                lo, hi = int(t.min()), int(t.max())
                dt = np.uint16 if lo >= 0 and hi < 65536 else (np.int16 if lo >= -32768 and hi < 32768 else np.int32)
                tab, off, g, L = t.astype(dt), 0, 1, 0
            nb = _lookup_block(self.N)
            B = self.B
            if window is not None:
                C, KH, KW = window
                B = np.ascontiguousarray(B.reshape(C, KH, KW, self.N).transpose(1, 0, 2, 3).reshape(KH * C, KW * self.N))
                nb = WINDOW_LANES
            nblk = -(-B.shape[1] // nb)
            B = B if order is None else np.ascontiguousarray(B[np.maximum(order, 0)])
            G = _build_rows(B, tab, nb, aligned_empty((nblk, B.shape[0], 256, nb), tab.dtype))
            if window is not None and B.shape[1] < nb:  # the spare last lane sums the codes themselves
                G[0, :, :, nb - 1] = np.arange(256)
            if order is not None:
                G[:, order < 0] = 0  # the zero rows under padded groups
            G = G.reshape(-1)
            kmax = (2**31 - 1) // max(int(np.abs(tab.astype(np.int64)).max()), 1)
            rows = self._rows[key] = {"G": G, "nb": nb, "nblk": nblk, "L": L, "off": off, "g": g,
                                      "kmax": max(1, kmax)}
        return rows

    def _lookup(self, src, xbase, groups, order=None, tout: bool = False, direct=None):
        """(acc, g, offset): C[m, n] = g * acc[m, n] + K * offset, acc int32 (int64 if K is long),
        shaped (M, N), or (N, M) when tout. Codes and groups as `_lut_gemm` reads them, table
        rows in `order`. direct = (out3, row0, st, rowsum): write a convolution's output
        straight from the kernel instead (one pass fewer), acc is None."""
        r = self._prepare_rows(order)
        M = xbase.shape[0]
        nb, nblk, L = r["nb"], r["nblk"], r["L"]
        # the accumulator block streams (mb rows of nb int32 + int16), so it can be long;
        # long blocks mean fewer passes over the tables
        workers = max(1, numba.get_num_threads())
        mb = max(64, min(4096, -(-M // max(1, -(-2 * workers // nblk)))))
        mb = -(-mb // 8) * 8
        width = -(-mb * nb // 32) * 32  # whole cache lines per worker row
        ws32 = self._buffer("lut_ws32", (workers, width if not (L and self.K <= L) else 32), np.int32)
        ws16 = self._buffer("lut_ws16", (workers, width if L else 32), np.int16)
        gm, ck = np.int64(r["g"]), np.int64(r["off"] * self.K)
        if r["kmax"] < 8:  # huge tables: a group's int32 sum could overflow, so one row per group
            groups = np.array([(o + i, r0 + i, 1) for o, r0, n in groups for i in range(n)], np.int64).reshape(-1, 3)
        ng = groups.shape[0]
        if direct is not None and self.K <= r["kmax"]:
            emit = _direct_emit(*direct, gm, ck)
            _lut_gemm(src, xbase, groups, r["G"], nb, nblk, mb, L, 0, ng, tout, _NO_OUT, emit, ws32, ws16)
            return None, gm, ck
        shape = (self.N, M) if tout else (M, self.N)
        out = self._buffer("lut_out", shape, np.int32)
        emit = (0, _NO_OUT3, 0, gm, ck, _NO_F64, _NO_I64, _NO_I64, _NO_F64, _NO_F64)
        if self.K <= r["kmax"]:
            acc = _lut_gemm(src, xbase, groups, r["G"], nb, nblk, mb, L, 0, ng, tout, out, emit, ws32, ws16)
        else:  # int32 lanes would overflow: sum group ranges of at most kmax rows in int64
            acc = np.zeros(shape, np.int64)
            g0, rows = 0, 0
            for g in range(ng + 1):
                n = int(groups[g, 2]) if g < ng else 0
                if g == ng or rows + n > r["kmax"]:
                    acc += _lut_gemm(src, xbase, groups, r["G"], nb, nblk, mb, L, g0, g, tout, out, emit, ws32,
                                     ws16)
                    g0, rows = g, 0
                rows += n
        return acc, gm, ck

    def _lookup_window(self, x, padding, pad_code, geom, st, want_rs, out, row0) -> bool:
        """The row-window lookup of one batch tile (see `_lut_window`), or False when its int32
        sums could overflow (then the patch layout runs). The patch code sums of the affine
        epilogue come from the windows' spare lane where there is one."""
        KH, KW, sh, sw, dh, dw, Ho, Wo = geom
        Bn, C, H, W = x.shape
        ph, pw = padding
        Hp, Wp = H + 2 * ph, W + 2 * pw
        xbase, groups, rows = self._layout(("window", Bn, C, Hp, Wp, KH, sh, Ho), lookup_layout_window,
                                           Bn, C, Hp, Wp, KH, sh, Ho)
        r = self._prepare_rows(None if np.array_equal(rows, np.arange(KH * C)) else rows, (C, KH, KW))
        if self.K > r["kmax"]:
            return False
        rs_lane = (WINDOW_LANES - 1 if KW * self.N < WINDOW_LANES else -1) if want_rs else -2
        rs = (_patch_sums(x, ph, pw, pad_code & 0xFF, _IDENTITY, KH, KW, sh, sw, dh, dw, Ho, Wo)
              if rs_lane == -1 else _NO_I64)
        n = Bn * Wp * Hp * C
        flat = self._buffer("xp_wt", (n + 8,), np.uint8)
        flat[n:] = 0
        _pad_codes_wt(np.ascontiguousarray(x), ph, pw, np.uint8(pad_code & 0xFF), flat[:n].reshape(Bn, Wp, Hp, C))
        workers = max(1, numba.get_num_threads())
        per = max(1, min(max(1, 2048 // Wp), -(-Bn * Ho // (2 * workers))))  # image rows per block
        mb = per * Wp
        lanes = mb * WINDOW_LANES
        ws32 = self._buffer("win_ws32", (workers, lanes + WINDOW_LANES), np.int32)
        ws16 = self._buffer("win_ws16", (workers, WINDOW_LANES), np.int16)
        tiles = self._buffer("win_tiles", (workers, Wo * 8 + 8), np.int32)
        rsums = self._buffer("win_rsums", (workers, Wo), np.float64)
        rsums[:] = 0
        gm, ck = np.int64(r["g"]), np.int64(r["off"] * self.K)
        # (L = 0: int16 tables too are summed straight into int32 lanes; the few rows per window
        # saved less than widening the whole block cost)
        _lut_window(flat, xbase, groups, r["G"], mb, 0, Wp, Wo, self.N, KW, rs_lane,
                    _direct_emit(out, row0, st, rs, gm, ck), ws32, ws16, tiles, rsums)
        return True

    def _layout(self, key, fn, *args):
        lay = self._ws.get(key)
        if lay is None:
            lay = fn(*args)
            self._ws[key] = lay
        return lay

    def _buffer(self, name: str, shape, dtype) -> np.ndarray:
        """A reusable work array on a 64-byte boundary: fresh multi-MB arrays cost page faults
        on every tile. One byte buffer per name holds the largest size asked so far, so the
        alternating shapes of a call's full and last batch tiles reuse it."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buf = self._ws.get(name)
        if buf is None or buf.size < nbytes:
            buf = aligned_empty((max(nbytes, 64),), np.uint8)
            self._ws[name] = buf
        return buf[:nbytes].view(dtype).reshape(shape)

    def _plain(self, A, path):
        if path == "naive":
            if self._bt is None:
                self._bt = np.ascontiguousarray(self.B.T)
            return _gemm_naive(A, self._bt, self.mult.table)
        return _gemm_reference(A, self.B, self.mult.table)

    # -- public --------------------------------------------------------------------------
    def path_for(self, M: int, conv_in: int = 0) -> tuple[str, str]:
        """(path, reason) this layer uses for M activation rows (conv_in: see `estimate_costs`);
        a factored path on the int8 backend is named "<kind>/int8"."""
        key = (M, conv_in)
        hit = self._paths.get(key)
        if hit is not None:
            return hit
        fb = self.factored_backend
        if self.requested in FACTORED:
            if fb == "auto" and int8_gemm() is not None and self.analysis.int8 is not None:
                costs = estimate_costs(self.analysis, M, self.K, self.N, conv_in)
                hit = (self.requested + "/int8", "requested; int8 backend by the model") if (
                    costs.get(self.analysis.kind + "/int8", np.inf) < costs[self.analysis.kind]) else (
                    self.requested, "requested")
            else:
                hit = (self.requested + ("/int8" if fb == "int8" else ""), "requested")
        elif self.requested != "auto":
            hit = (self.requested, "requested")
        else:
            path, why = choose_path(self.analysis, M, self.K, self.N, conv_in, int8=None if fb == "auto" else False)
            if fb == "int8" and path in FACTORED:
                path += "/int8"
            hit = (path, why)
        self._paths[key] = hit
        return hit

    def _use(self, M: int, conv_in: int = 0) -> tuple[str, bool]:
        """(path, on the int8 backend) for this call, recorded for `describe`."""
        key, reason = self.path_for(M, conv_in)
        path, _, backend = key.partition("/")
        self.last_path, self.last_reason = path, reason
        self.last_conv_layout = None  # (set by the direct convolution)
        self.last_lookup_layout = None  # (set by a convolution's lookup)
        self.last_backend = ("int8" if backend else "float") if path in FACTORED else None
        return path, bool(backend)

    # -- int8 backend of the factored paths ----------------------------------------------
    def _prepare_int8(self):
        if self._int8 is not None:
            return self._int8
        torch = int8_gemm()
        U, V, c, al, be = self.analysis.int8
        R, K, N = U.shape[0], self.K, self.N
        chunks = _greedy_chunks(_factor_bounds(U, V, self.B), I32_LIMIT)
        if chunks is None:  # a single term cannot exceed 128 * 128: unreachable
            raise ValueError(f"multiplier {self.mult.name!r}: int8 factor bound exceeded")
        Y = np.empty((R * K, N), np.int8)
        for r in range(R):
            Y[r * K:(r + 1) * K] = V[r][self.B]
        vals = code_values(self.analysis.signed)
        aff_s, aff_t = np.zeros(R, np.float32), np.zeros(R, np.float32)
        affine = True
        for r in range(R):
            s_r, t_r = int(U[r, 1]) - int(U[r, 0]), int(U[r, 0])
            if not np.array_equal(s_r * vals + t_r, U[r]):
                affine = False
            aff_s[r], aff_t[r] = s_r, t_r
        self._int8 = {
            "torch": torch, "chunks": chunks, "U8": np.ascontiguousarray(U.astype(np.int8)),
            "ys": [_dense_i8(torch, Y[a:b]) for a, b in chunks],
            "ysT": [_dense_i8(torch, Y[a:b].T) for a, b in chunks],
            "affine": affine, "aff_s": aff_s, "aff_t": aff_t,
            "sbeta": np.ascontiguousarray(be[self.B].sum(axis=0), dtype=np.int64), "ck": np.int64(int(c) * K),
            "alpha": np.ascontiguousarray(al, dtype=np.int64), "use_alpha": bool(np.any(al))}
        fields = bit_fields(U)
        coef = None if fields is None else linear_in_fields(al, U)
        self._int8["fields"] = fields
        self._int8["coef"] = np.zeros(R + 1, np.int64) if coef is None else coef
        self._int8["use_coef"] = coef is not None
        return self._int8

    def _int8_product(self, X, transposed: bool):
        """sum over chunks of X_c @ Y_c (int8 X (M, R*K); or Y_c^T @ X_c with X (R*K, M) when
        transposed), int32 from one chunk, int64 from several."""
        f = self._int8
        torch = f["torch"]
        xt = torch.from_numpy(X)
        acc = None
        for (a, b), y, yT in zip(f["chunks"], f["ys"], f["ysT"]):
            if transposed:
                part = torch._int_mm(yT, _dense_i8(torch, xt[a:b]))
            else:
                part = torch._int_mm(_dense_i8(torch, xt[:, a:b]), y)
            part = part.numpy()
            acc = part if acc is None else acc.astype(np.int64) + part
        return acc

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

    def _emit(self, acc, nm, gm, salpha, sbeta, ck, rs, st, out3, row0):
        if st is None:
            _emit_int(acc, nm, gm, salpha, sbeta, ck, out3, row0)
        else:
            _emit_float(acc, nm, gm, _f64(salpha), sbeta, ck, _f64(rs), st[1], st[2], st[3], st[4], out3, row0)

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
        path, on_int8 = self._use(M)
        st = None if epilogue is None else self._epilogue_state(epilogue)
        if out is None:
            out = np.empty((M, self.N, 1), np.int64 if epilogue is None else np.float32)
        P = out.shape[2]
        factored = path in FACTORED
        # converted bytes per row: float32 factors (4 per element and factor), int8 (1)
        width = self.K * (max(self.analysis.rank, 1) * (1 if on_int8 else 4) if factored else 1)
        step = max(P, (self.TILE_BYTES // max(width, 1)) // P * P)  # whole images per tile
        want_rs = st is not None and st[0]
        zero_n = np.zeros(self.N, np.int64)
        one = np.int64(1)
        for m0 in range(0, M, step):
            At = A[m0:min(M, m0 + step)]
            mt = At.shape[0]
            if on_int8:
                f = self._prepare_int8()
                X = self._buffer("X8", (mt, f["U8"].shape[0] * self.K), np.int8)
                if f["fields"] is not None:
                    X, salpha, rs = _convert_fields_i8(At, f["fields"], f["coef"], f["use_coef"], f["alpha"],
                                                       f["use_alpha"], want_rs, X)
                else:
                    X, salpha, rs = _convert(At, f["U8"], f["alpha"], f["use_alpha"], want_rs, X)
                acc = self._int8_product(X, False)
                self._emit(acc, False, one, salpha, f["sbeta"], f["ck"], rs, st, out, row0 + m0)
                continue
            if factored:
                f = self._prepare_factored()
                X = self._buffer("X", (mt, f["Uf"].shape[0] * self.K), f["dtype"])
                X, salpha, rs = _convert(At, f["Uf"], f["alpha"], f["use_alpha"], want_rs, X)
                acc = self._gemm_chunks(X, False)
                self._emit(acc, False, one, salpha, f["sbeta"], f["ck"], rs, st, out, row0 + m0)
                continue
            gm, ck = one, np.int64(0)
            if path == "lookup":
                inter = _PACKED and self.K % 8 == 0 and mt >= 64
                if inter:
                    # codes regrouped per eight k (one group of the kernel): each group then
                    # reads one sequential stream, where row-major A touches a new line per row
                    A8 = self._buffer("A8", (self.K // 8, mt), np.uint64)
                    np.copyto(A8, np.ascontiguousarray(At).view(np.uint64).T)
                    src = A8.reshape(-1).view(np.uint8)
                else:  # row-major, with the 8 bytes past the end a group of 4 loads
                    src = self._buffer("A1", (mt * self.K + 8,), np.uint8)
                    src[:-8] = At.reshape(-1)
                    src[-8:] = 0
                xbase, groups, order = self._layout(("gemm", mt, inter), lookup_layout_gemm, mt, self.K, inter)
                acc, gm, ck = self._lookup(src, xbase, groups, order)
            else:
                acc = self._plain(At, path)
            rs = _rowsum(At) if want_rs else np.zeros(mt, np.int64)
            self._emit(acc, False, gm, np.zeros(mt, np.int64), zero_n, ck, rs, st, out, row0 + m0)
        if epilogue is None and P == 1:
            return out.reshape(M, self.N)
        return out

    def conv_plan_for(self, C: int, kh: int, kw: int, padding, pad_code: int):
        """The direct-convolution plan for this layer's geometry (None: not available)."""
        if not self.analysis.factored:
            return None
        return self._conv_plan(C, kh, kw, (pad_code & 0xFF) if any(padding) else None)

    def run_patches(self, x, geom, epilogue: Epilogue | None, out, row0: int, padding=(0, 0), pad_code: int = 0):
        """One batch tile of a convolution from its input x (B, C, H, W) codes, padded by
        `padding` with `pad_code`.

        geom = (KH, KW, sh, sw, dh, dw, Ho, Wo); writes out[b, n, p] (int64 without an
        epilogue, float32 with one) for the tile's images, starting at flat row row0.
        """
        KH, KW, sh, sw, dh, dw, Ho, Wo = geom
        M = x.shape[0] * Ho * Wo
        plan = self.conv_plan_for(x.shape[1], KH, KW, padding, pad_code)
        if plan is not None and self.requested == "auto" and self.factored_backend != "int8":
            self._timed_conv_path(x, geom, epilogue, out, row0, padding, pad_code, plan)
        path, on_int8 = self._use(M, x.size if plan is not None else 0)
        st = None if epilogue is None else self._epilogue_state(epilogue)
        want_rs = st is not None and st[0]
        one = np.int64(1)
        ph, pw = padding
        if on_int8:
            f = self._prepare_int8()
            xp = pad_codes(x, padding, pad_code, out=self._buffer(
                "xp", x.shape[:2] + (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), np.uint8))
            AT = _im2col_cols(xp, KH, KW, sh, sw, dh, dw, Ho, Wo)
            XT = self._buffer("XT8", (f["U8"].shape[0] * self.K, M), np.int8)
            XT, salpha, rs = _convert_cols(AT, f["U8"], f["aff_s"], f["aff_t"], f["affine"], self.analysis.signed,
                                           f["alpha"], f["use_alpha"], want_rs, XT)
            accT = self._int8_product(XT, True)
            self._emit(accT, True, one, salpha, f["sbeta"], f["ck"], rs, st, out, row0)
            return out
        if path in FACTORED and plan is not None:
            return self._run_conv(plan, x, padding, pad_code & 0xFF, geom, st, want_rs, out, row0)
        if path == "lookup":
            why = window_fits(self.N, KH, KW, sh, sw, dh, dw)
            if self.lookup_layout == "window" and why is not None:
                raise ValueError(f"lookup_layout='window': {why}")
            if (self.lookup_layout != "patches" and why is None
                    and self._lookup_window(x, padding, pad_code, geom, st, want_rs, out, row0)):
                self.last_lookup_layout = "window"
                return out
            self.last_lookup_layout = "patches"
            rs = (_patch_sums(x, ph, pw, pad_code & 0xFF, _IDENTITY, KH, KW, sh, sw, dh, dw, Ho, Wo) if want_rs
                  else np.zeros(M, np.int64))
            # NHWC copy of the padded ifmap, read in place by the kernel (implicit im2col),
            # with the 8 bytes past the end a group of 4 loads
            Bn, C, H, W = x.shape
            Hp, Wp = H + 2 * ph, W + 2 * pw
            n = Bn * Hp * Wp * C
            flat = self._buffer("xp_nhwc", (n + 8,), np.uint8)
            flat[n:] = 0
            _pad_codes_nhwc(np.ascontiguousarray(x), ph, pw, np.uint8(pad_code & 0xFF),
                            flat[:n].reshape(Bn, Hp, Wp, C))
            xbase, groups, order = self._layout(("conv", Bn, C, Hp, Wp) + tuple(geom), lookup_layout_conv,
                                                Bn, C, Hp, Wp, KH, KW, sh, sw, dh, dw, Ho, Wo)
            acc, gm, ck = self._lookup(flat, xbase, groups, order, tout=True, direct=(out, row0, st, rs))
            if acc is not None:
                self._emit(acc, True, gm, np.zeros(M, np.int64), np.zeros(self.N, np.int64), ck, rs, st, out, row0)
            return out
        xp = pad_codes(x, padding, pad_code, out=self._buffer(
            "xp", x.shape[:2] + (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), np.uint8))
        if path in FACTORED:
            f = self._prepare_factored()
            AT = _im2col_cols(xp, KH, KW, sh, sw, dh, dw, Ho, Wo)
            XT = self._buffer("XT", (f["Uf"].shape[0] * self.K, M), f["dtype"])
            XT, salpha, rs = _convert_cols(AT, f["Uf"], f["aff_s"], f["aff_t"], f["affine"], self.analysis.signed,
                                           f["alpha"], f["use_alpha"], want_rs, XT)
            accT = self._gemm_chunks(XT, True)
            self._emit(accT, True, one, salpha, f["sbeta"], f["ck"], rs, st, out, row0)
            return out
        A = _im2col_padded(xp, KH, KW, sh, sw, dh, dw, Ho, Wo)
        acc = self._plain(A, path)
        rs = _rowsum(A) if want_rs else np.zeros(M, np.int64)
        self._emit(acc, False, np.int64(1), np.zeros(M, np.int64), np.zeros(self.N, np.int64), np.int64(0), rs, st,
                   out, row0)
        return out

    def _timed_conv_path(self, x, geom, epilogue, out, row0, padding, pad_code, plan):
        """Under path="auto", a convolution whose lookup and direct-convolution costs the model
        puts within CONV_PATH_TIMING_BAND of each other runs both (one warm-up, then three
        alternating timed rounds) and keeps the faster for this call shape; the choice is also
        kept module-wide per layer geometry and table kind, so later layers of that shape (a
        search's candidates) reuse it untimed. Both write the same exact integers."""
        M = x.shape[0] * geom[6] * geom[7]
        key = (M, x.size)
        hit = self._paths.get(key)
        if hit is not None and (hit[1] == "timing" or "timed" in hit[1]):
            return
        an = self.analysis
        costs = estimate_costs(an, M, self.K, self.N, x.size, int8=False)
        if an.kind not in costs or max(costs.values()) > CONV_PATH_TIMING_BAND * min(costs.values()):
            return
        gkey = (x.shape[1:], tuple(geom), tuple(padding), self.N, an.kind, an.rank, an.narrow is not None,
                len(plan["wts"]), self.lookup_variant, self.lookup_layout, self.conv_layout, numba.get_num_threads())
        model = ", ".join(f"{k}~{v / 1e6:.2f}ms" for k, v in sorted(costs.items(), key=lambda kv: kv[1]))
        done = _CONV_PATHS.get(gkey)
        if done is None:
            best = {"lookup": np.inf, an.kind: np.inf}
            for rnd in range(4):
                for p in best:
                    self._paths[key] = (p, "timing")
                    t0 = time.perf_counter()
                    self.run_patches(x, geom, epilogue, out, row0, padding, pad_code)
                    if rnd:
                        best[p] = min(best[p], time.perf_counter() - t0)
            done = _CONV_PATHS[gkey] = (min(best, key=best.get),
                                        ", ".join(f"{k} {v * 1e3:.2f}ms" for k, v in best.items()))
        self._paths[key] = (done[0], f"{an.note}; model: {model}; timed: {done[1]}")

    def describe(self) -> dict:
        """JSON-ready: multiplier, table kind, last path used and why."""
        return {"multiplier": self.mult.name, "kind": self.analysis.kind, "rank": self.analysis.rank,
                "K": self.K, "N": self.N, "path": self.last_path, "factored_backend": self.last_backend,
                "conv_layout": self.last_conv_layout, "lookup_layout": self.last_lookup_layout,
                "reason": self.last_reason}


def ax_gemm(a_codes, b_codes, mult, path: str = "auto", signed: bool | None = None) -> np.ndarray:
    """LUT-exact approximate GEMM C[m,n] = sum_k T[A[m,k], B[k,n]] (int64) by the chosen path."""
    A, B = _check_gemm(a_codes, b_codes)
    return PreparedGemm(B, mult, path, signed)(A)


class PreparedConv2d:
    """One conv layer's LUT convolution with its weights fixed (groups handled as separate GEMMs).

    Calls are processed in batch tiles, so work arrays (factor planes, accumulators, or the
    patch matrix of the im2col fallback) stay bounded for any batch.
    """

    TILE_BYTES = 8 << 20  # work-array bytes per batch tile

    def __init__(self, w_codes, mult, stride=1, padding=0, dilation=1, groups: int = 1,
                 path: str = "auto", signed: bool | None = None, lookup_variant: str = "auto",
                 conv_backend: str = "auto", factored_backend: str = "auto", conv_layout: str = "auto",
                 lookup_layout: str = "auto"):
        w = _codes(w_codes, "w_codes")
        if w.ndim != 4 or w.shape[0] % groups:
            raise ValueError(f"w_codes must be (O, C/groups, kh, kw) with O divisible by groups={groups}, got {w.shape}")
        self.w = w
        self.stride, self.padding, self.dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
        self.groups = int(groups)
        O, Cg, kh, kw = w.shape
        og = O // groups
        self.gemms = [PreparedGemm(w[g * og:(g + 1) * og].reshape(og, -1).T, mult, path, signed,
                                   lookup_variant, conv_backend, factored_backend, conv_layout, lookup_layout)
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
        g0 = self.gemms[0]
        # bytes of work arrays per image on the path the whole batch would take
        plan = g0.conv_plan_for(Cg, kh, kw, self.padding, pad_code)
        path = g0.path_for(Bn * P, Bn * Cg * H * W if plan is not None else 0)[0]
        if path == "lookup":
            per_image = P * (og * 4 + 8)
        elif path in FACTORED and plan is not None:
            per_image = (plan["R"] * Cg * H * W + og * P) * 4
        else:
            per_image = P * Cg * kh * kw * max(1, g0.analysis.rank) * 4
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
            xg = x if self.groups == 1 else np.ascontiguousarray(x[:, g * Cg:(g + 1) * Cg])
            for b0 in range(0, Bn, bt):
                gemm.run_patches(xg[b0:min(Bn, b0 + bt)], geom, sub, gout, b0 * P, self.padding, pad_code)
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
