"""Partial-product approximations of the 8x8 multiplier: truncation, broken array, perforation.

All three families remove partial products a_i*b_j (a_i = bit i of port A, the activation;
b_j = bit j of port B, the weight) from an exact multiplier and let the builder's constant
folding delete the AND gates and adders that only served them, so the netlist's area is what
the removal leaves. The behavioural references compute the same sums of kept partial
products in NumPy.

- Truncated (``mul8u_trunc_t{t}``, ``mul8s_trunc_t{t}``): drops every a_i*b_j of weight
  i+j < t, a symmetric treatment of A and B. ``_c`` variants add the constant correction
  C(t) = round(E[sum of dropped terms]) under uniform operands. Every bit of a uniform
  operand is 1 with probability 1/2, so E[a_i b_j] = 1/4 and
  E = 1/4 * sum_{w<t} (w+1) 2^w  (t <= 8, so column w holds w+1 terms),
  giving C(4) = round(12.25) = 12, C(6) = round(80.25) = 80, C(8) = round(448.25) = 448.
  The signed (Baugh-Wooley) versions drop the same columns; for t <= 7 those columns hold only
  the plain a_i b_j terms (i, j < 7), whose bits are also uniform for uniform signed
  operands, so the same constants apply. Reduction: Dadda tree + ripple-carry adder.
- Broken array (``mul8u_bam_h{HBL}_v{VBL}``, Mahdiani et al., TCAS-I 2010): an unsigned
  carry-save array multiplier whose adder cells are omitted above the horizontal break level
  and right of the vertical break level. We follow the convention of the public ArithsGen
  generator (the one behind EvoApprox's "Broken Array Multiplier(bw, v, h)" circuits): the
  array's rows are B's bits (row j adds A*b_j), rows j < HBL are omitted, and in the kept rows
  the cells of weight i+j < VBL are omitted, i.e. a_i*b_j is kept iff j >= HBL and
  i+j >= VBL. The output is then exactly the sum of the kept partial products, with bits below
  max(HBL, VBL) constant 0. HBL acts on the weight B, VBL on both operands. With HBL = 0 the
  function equals truncation at t = VBL (only the adder structure differs: array vs Dadda).
- Partial-product perforation (``mul8u_perf_j{j}_k{k}``, ``mul8s_perf_j{j}_k{k}``; Zervakis et
  al., TVLSI 2016): the partial-product rows are the weight operand B's bits; the k
  consecutive rows j..j+k-1 are omitted, so the result is exactly A * (B with bits j..j+k-1
  cleared). A is untouched. For signed operands (Baugh-Wooley, j+k <= 7 so the sign row stays)
  the same identity holds on the two's complement code, which is why the signed variant is
  clean: the perforated rows are fed constant zeros and the Baugh-Wooley correction terms fold.
  Reduction: Dadda tree + ripple-carry adder.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..builder import Builder
from ..netlist import CONST0, CONST1, Netlist
from . import DesignSpec, register
from .exact import N, W, baugh_wooley_columns


# -- truncated -------------------------------------------------------------------------------
def truncation_correction(t: int) -> int:
    """Rounded expected value of the dropped partial products a_i*b_j, i+j < t (uniform operands)."""
    expected = sum(2 ** (i + j) for i in range(N) for j in range(N) if i + j < t) / 4.0
    return int(np.floor(expected + 0.5))


def _add_constant(cols: list[list[int]], value: int) -> None:
    """Append the bits of a constant to a column matrix (constant-1 inputs fold in the adders)."""
    for w in range(W):
        if (value >> w) & 1:
            cols[w].append(CONST1)


def build_truncated(t: int, correct: bool, signed: bool, name: str) -> Netlist:
    """Truncated multiplier: drop a_i*b_j with i+j < t, optionally add the correction constant."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    if signed:
        full = baugh_wooley_columns(b, a, bw)
    else:
        full = [[] for _ in range(W)]
        for j in range(N):
            for i in range(N):
                full[i + j].append(b.and2(a[i], bw[j]))
    # dropped columns lose their nets; the unused AND gates are pruned by finish()
    cols = [list(col) if w >= t else [] for w, col in enumerate(full)]
    if correct:
        _add_constant(cols, truncation_correction(t))
    b.output("O", b.sum_columns(cols, W, "dadda"), W)
    return b.finish()


def _dropped_sum(a: np.ndarray, bb: np.ndarray, keep) -> np.ndarray:
    """Sum of the partial products a_i*b_j 2^(i+j) for which keep(i, j) is False."""
    out = np.zeros(np.broadcast(a, bb).shape, dtype=np.int64)
    for j in range(N):
        for i in range(N):
            if not keep(i, j):
                out += (((a >> i) & 1) * ((bb >> j) & 1)) << (i + j)
    return out


def truncated_reference(a: np.ndarray, bb: np.ndarray, t: int, correct: bool) -> np.ndarray:
    """Exact product minus the dropped terms (i+j < t, all with i, j < 7), plus C(t) if corrected."""
    # for t <= 7 the dropped terms never involve bit 7, so the same sum serves signed codes
    prod = a * bb - _dropped_sum(a, bb, lambda i, j: i + j >= t)
    return prod + (truncation_correction(t) if correct else 0)


# -- broken array ----------------------------------------------------------------------------
def bam_keep(i: int, j: int, hbl: int, vbl: int) -> bool:
    """True when a_i*b_j survives the horizontal (rows of B) and vertical (weight) breaks."""
    return j >= hbl and i + j >= vbl


def build_bam(hbl: int, vbl: int, name: str) -> Netlist:
    """Unsigned broken-array multiplier: carry-save array of the kept partial-product rows."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    rows = []
    for j in range(N):
        row = [b.and2(a[i], bw[j]) if bam_keep(i, j, hbl, vbl) else CONST0 for i in range(N)]
        rows.append([CONST0] * j + row)
    b.output("O", b.array_sum_rows(rows, W), W)
    return b.finish()


def bam_reference(a: np.ndarray, bb: np.ndarray, hbl: int, vbl: int) -> np.ndarray:
    """Sum of the kept partial products of the broken array."""
    return a * bb - _dropped_sum(a, bb, lambda i, j: bam_keep(i, j, hbl, vbl))


# -- partial-product perforation ---------------------------------------------------------------
def _perforated_b(bw: list[int], j: int, k: int) -> list[int]:
    return [CONST0 if j <= r < j + k else net for r, net in enumerate(bw)]


def build_perforated(j: int, k: int, signed: bool, name: str) -> Netlist:
    """Perforated multiplier: rows j..j+k-1 (bits of B) omitted, Dadda tree reduction."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    bp = _perforated_b(bw, j, k)
    if signed:
        cols = baugh_wooley_columns(b, a, bp)
    else:
        cols = [[] for _ in range(W)]
        for r in range(N):
            for i in range(N):
                cols[i + r].append(b.and2(a[i], bp[r]))
    b.output("O", b.sum_columns(cols, W, "dadda"), W)
    return b.finish()


def perforated_reference(a: np.ndarray, bb: np.ndarray, j: int, k: int) -> np.ndarray:
    """A times B with bits j..j+k-1 of B's code cleared (two's complement code for signed)."""
    mask = ((1 << k) - 1) << j
    return a * (bb & ~np.int64(mask))


# -- registration ------------------------------------------------------------------------------
def _register_all() -> None:
    for t in (4, 6, 8):
        for corr in (False, True):
            nm = f"mul8u_trunc_t{t}" + ("_c" if corr else "")
            c = truncation_correction(t) if corr else 0
            register(DesignSpec(
                nm, "truncated", False, partial(build_truncated, t, corr, False, nm),
                partial(truncated_reference, t=t, correct=corr),
                {"t": t, "correction": c},
                f"unsigned truncated multiplier, a_i*b_j with i+j<{t} dropped"
                + (f", +{c} constant correction" if corr else "")))
    for t in (4, 6):
        for corr in (False, True):
            nm = f"mul8s_trunc_t{t}" + ("_c" if corr else "")
            c = truncation_correction(t) if corr else 0
            register(DesignSpec(
                nm, "truncated", True, partial(build_truncated, t, corr, True, nm),
                partial(truncated_reference, t=t, correct=corr),
                {"t": t, "correction": c},
                f"signed Baugh-Wooley truncated multiplier, columns <{t} dropped"
                + (f", +{c} constant correction" if corr else "")))
    for hbl, vbl in ((0, 6), (0, 8), (1, 6), (2, 7)):
        nm = f"mul8u_bam_h{hbl}_v{vbl}"
        register(DesignSpec(
            nm, "broken_array", False, partial(build_bam, hbl, vbl, nm),
            partial(bam_reference, hbl=hbl, vbl=vbl), {"hbl": hbl, "vbl": vbl},
            f"unsigned broken-array multiplier, rows b_j<{hbl} and weights i+j<{vbl} omitted"))
    for signed in (False, True):
        for j, k in ((0, 1), (0, 2), (1, 2), (2, 2)):
            nm = f"mul8{'s' if signed else 'u'}_perf_j{j}_k{k}"
            register(DesignSpec(
                nm, "perforated", signed, partial(build_perforated, j, k, signed, nm),
                partial(perforated_reference, j=j, k=k), {"j": j, "k": k},
                f"{'signed' if signed else 'unsigned'} partial-product perforation, "
                f"rows B[{j}..{j + k - 1}] omitted"))


_register_all()
