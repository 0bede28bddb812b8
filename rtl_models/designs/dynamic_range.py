"""Operand-segmenting approximate multipliers: DRUM, SSM, Kulkarni's 2x2 blocks, ETM (unsigned).

- DRUM-k (``mul8u_drum_k{k}``; Hashemi, Bahar, Reda, ICCAD 2015). Both operands (A, the
  activation, and B, the weight) get the same treatment: a leading-one detector finds the
  top set bit p; if p >= k the k bits x[p..p-k+1] are kept and the lowest kept bit is forced
  to 1 (this unbiases the truncation: it stands for the expected value of the dropped bits);
  the two k-bit segments are multiplied exactly (k x k Dadda) and the product is shifted left
  by the sum of the two truncation shifts. Operands below 2^k pass unchanged, so products of
  two such operands are exact.
- SSM-m (``mul8u_ssm_m{m}``; static segment method, Narayanamoorthy et al., TVLSI 2015). Both
  operands: if the high 8-m bits are all zero the low m bits are taken (exact), otherwise the
  top m bits (the low 8-m bits are dropped, no rounding); an m x m exact multiply; the product
  is shifted left by (8-m) for each operand that took its top segment.
- Kulkarni (``mul8u_kulkarni``; Kulkarni, Gupta, Ercegovac, VLSID 2011). The 2x2 block
  computes the exact product except 3*3 = 7 (binary 111, three output bits instead of four):
  O0 = a0 b0, O1 = a1 b0 OR a0 b1, O2 = a1 b1. Four blocks make a 4x4 and four 4x4 make the
  8x8; all the additions are exact. Symmetric in A and B. We place the sixteen 3-bit block
  outputs (block (p, q) at weight 2^(2p+2q)) into one column matrix and reduce it with a
  Dadda tree: the same value as adding the 4x4 results exactly, with fewer adders.
- ETM (``mul8u_etm_s{s}``; error-tolerant multiplier, Kyaw, Goh, Yeo, EDSSC 2010). Both
  operands are split at bit s into a "multiplication part" (bits s..7) and a
  "non-multiplication part" (bits 0..s-1). If the multiplication parts of A and B are both
  zero, the one shared exact multiplier multiplies the low parts and the result is exact.
  Otherwise it multiplies the high parts (placed at weight 2^(2s)) and the low 2s product
  bits come from the non-multiplication part without any multiplier: scanning bit positions
  i = s-1 down to 0, product bit s+i is 0 while both a_i and b_i (and everything above) were
  0, and once a position with a_i OR b_i = 1 is met, that product bit and every lower one
  (down to bit 0) is 1. In a formula: with c = (A mod 2^s) OR (B mod 2^s), the low part is
  0 if c = 0, else 2^(s+msb(c)+1) - 1. The cross terms A_hi*B_lo and A_lo*B_hi are not
  computed at all. This matches the published description and the open Chisel implementation
  of ETM in the `approx` library (whose low-part multiplier input reads B's low part for A,
  an evident typo we do not copy). Symmetric in A and B.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..builder import Builder, Word
from ..netlist import CONST0, Netlist
from . import DesignSpec, register

N = 8
W = 2 * N


# -- word-level helpers --------------------------------------------------------------------------
def exact_mul(b: Builder, x: Word, y: Word) -> Word:
    """Exact unsigned len(x) x len(y) multiplier (AND array + Dadda tree + ripple adder)."""
    width = len(x) + len(y)
    cols: list[Word] = [[] for _ in range(width)]
    for j, yj in enumerate(y):
        for i, xi in enumerate(x):
            cols[i + j].append(b.and2(xi, yj))
    return b.sum_columns(cols, width, "dadda")


def mux_word_zero_fill(b: Builder, sel: int, x: Word, y: Word) -> Word:
    """sel ? y : x bitwise, sharing one inverter of sel over the bits where y is constant 0."""
    n = max(len(x), len(y))
    x = list(x) + [CONST0] * (n - len(x))
    y = list(y) + [CONST0] * (n - len(y))
    nsel = None
    out: Word = []
    for xi, yi in zip(x, y):
        if yi == CONST0 and not b.is_const(xi) and not b.is_const(sel):
            if nsel is None:
                nsel = b.inv(sel)
            out.append(b.and2(nsel, xi))
        else:
            out.append(b.mux2(sel, xi, yi))
    return out


def shift_left(b: Builder, x: Word, amount: Word, width: int) -> Word:
    """x << amount truncated to `width` bits (log shifter, one inverter per stage)."""
    cur = list(x[:width]) + [CONST0] * (width - len(x[:width]))
    for k, s in enumerate(amount):
        step = 1 << k
        shifted = [CONST0] * min(step, width) + cur[: max(width - step, 0)]
        cur = mux_word_zero_fill(b, s, cur, shifted)[:width]
    return cur


def shift_right(b: Builder, x: Word, amount: Word) -> Word:
    """x >> amount, same width as x (log shifter, one inverter per stage)."""
    cur = list(x)
    n = len(cur)
    for k, s in enumerate(amount):
        step = 1 << k
        shifted = (cur[step:] + [CONST0] * min(step, n))[:n]
        cur = mux_word_zero_fill(b, s, cur, shifted)
    return cur


def _msb_pos(x: np.ndarray) -> np.ndarray:
    """Position of the highest set bit of each (non-negative) value; 0 for 0."""
    pos = np.zeros(np.shape(x), dtype=np.int64)
    for p in range(1, 16):
        pos = np.where(x >> p != 0, p, pos)
    return pos


# -- DRUM ---------------------------------------------------------------------------------------
def _drum_segment(b: Builder, x: Word, k: int) -> tuple[Word, Word]:
    """(k-bit segment with the lowest bit forced when truncated, binary shift amount)."""
    # the leading one of x[k-1..7] sits at position s of that sub-word exactly when the
    # truncation shift is s (and s = 0 when x < 2^k)
    _, shift, _ = b.leading_one(x[k - 1:])
    seg = shift_right(b, x, shift)[:k]
    seg[0] = b.or2(seg[0], b.or_reduce(shift))
    return seg, shift


def build_drum(k: int, name: str) -> Netlist:
    """DRUM-k: leading-one segments of k bits (unbiased), k x k multiply, shift back."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    sa, sha = _drum_segment(b, a, k)
    sb, shb = _drum_segment(b, bw, k)
    prod = exact_mul(b, sa, sb)
    total_shift = b.ripple_add(sha, shb)
    b.output("O", shift_left(b, prod, total_shift, W), W)
    return b.finish()


def _drum_operand(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    shift = np.maximum(_msb_pos(x) - (k - 1), 0)
    seg = (x >> shift) | (shift > 0)
    return seg, shift


def drum_reference(a: np.ndarray, bb: np.ndarray, k: int) -> np.ndarray:
    """DRUM-k behavioural model."""
    sa, ha = _drum_operand(a, k)
    sb, hb = _drum_operand(bb, k)
    return (sa * sb) << (ha + hb)


# -- SSM ----------------------------------------------------------------------------------------
def build_ssm(m: int, name: str) -> Netlist:
    """SSM-m: static m-bit segment (low or top bits), m x m multiply, shift back."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    hi_a = b.or_reduce(a[m:])
    hi_b = b.or_reduce(bw[m:])
    seg_a = b.mux_word(hi_a, a[:m], a[N - m:])
    seg_b = b.mux_word(hi_b, bw[:m], bw[N - m:])
    prod = exact_mul(b, seg_a, seg_b)
    step = N - m
    out = mux_word_zero_fill(b, hi_a, prod, [CONST0] * step + prod)
    out = mux_word_zero_fill(b, hi_b, out, [CONST0] * step + out)
    b.output("O", out[:W], W)
    return b.finish()


def ssm_reference(a: np.ndarray, bb: np.ndarray, m: int) -> np.ndarray:
    """SSM-m behavioural model."""
    step = N - m
    sha = np.where(a >> m != 0, step, 0)
    shb = np.where(bb >> m != 0, step, 0)
    return ((a >> sha) * (bb >> shb)) << (sha + shb)


# -- Kulkarni -----------------------------------------------------------------------------------
def kulkarni_block(b: Builder, x: Word, y: Word) -> Word:
    """Kulkarni's approximate 2x2 multiplier: exact except 3*3 = 7 (3 output bits)."""
    return [b.and2(x[0], y[0]), b.or2(b.and2(x[1], y[0]), b.and2(x[0], y[1])), b.and2(x[1], y[1])]


def build_kulkarni(name: str) -> Netlist:
    """8x8 multiplier from sixteen Kulkarni 2x2 blocks, exact accumulation."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    cols: list[Word] = [[] for _ in range(W)]
    for p in range(N // 2):
        for q in range(N // 2):
            blk = kulkarni_block(b, a[2 * p:2 * p + 2], bw[2 * q:2 * q + 2])
            for i, bit in enumerate(blk):
                cols[2 * p + 2 * q + i].append(bit)
    b.output("O", b.sum_columns(cols, W, "dadda"), W)
    return b.finish()


def kulkarni_reference(a: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """Kulkarni 8x8 behavioural model: sum of the 2x2 block products with 3*3 -> 7."""
    out = np.zeros(np.broadcast(a, bb).shape, dtype=np.int64)
    for p in range(N // 2):
        for q in range(N // 2):
            x = (a >> (2 * p)) & 3
            y = (bb >> (2 * q)) & 3
            blk = np.where((x == 3) & (y == 3), 7, x * y)
            out += blk << (2 * p + 2 * q)
    return out


# -- ETM ----------------------------------------------------------------------------------------
def build_etm(s: int, name: str) -> Netlist:
    """Error-tolerant multiplier split at bit s (one shared (8-s)-bit multiplier)."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    ctrl = b.or2(b.or_reduce(a[s:]), b.or_reduce(bw[s:]))
    # the shared multiplier sees the high parts when ctrl, else the (narrower) low parts
    ma = b.mux_word(ctrl, a[:s], a[s:])
    mb = b.mux_word(ctrl, bw[:s], bw[s:])
    prod = exact_mul(b, ma, mb)
    # non-multiplication part: prefix OR from the top low bit down
    low: Word = [CONST0] * (2 * s)
    run = CONST0
    for i in range(s - 1, -1, -1):
        run = b.or3(run, a[i], bw[i])
        low[s + i] = run
    for i in range(s):
        low[i] = run
    out: Word = []
    for i in range(W):
        when_hi = low[i] if i < 2 * s else (prod[i - 2 * s] if i - 2 * s < len(prod) else CONST0)
        # without ctrl the low parts' product fits in 2s bits
        when_lo = prod[i] if i < 2 * s else CONST0
        out.append(b.mux2(ctrl, when_lo, when_hi))
    b.output("O", out, W)
    return b.finish()


def etm_reference(a: np.ndarray, bb: np.ndarray, s: int) -> np.ndarray:
    """ETM behavioural model (see the module docstring)."""
    lo_mask = (1 << s) - 1
    ha, hb = a >> s, bb >> s
    c = (a | bb) & lo_mask
    low = np.where(c != 0, (np.int64(1) << (s + _msb_pos(c) + 1)) - 1, 0)
    approx = ((ha * hb) << (2 * s)) | low
    return np.where((ha | hb) != 0, approx, a * bb)


# -- registration -------------------------------------------------------------------------------
def _register_all() -> None:
    for k in (3, 4, 5, 6):
        nm = f"mul8u_drum_k{k}"
        register(DesignSpec(nm, "drum", False, partial(build_drum, k, nm), partial(drum_reference, k=k),
                            {"k": k}, f"DRUM-{k}: unbiased {k}-bit leading-one segments of A and B"))
    for m in (4, 5, 6):
        nm = f"mul8u_ssm_m{m}"
        register(DesignSpec(nm, "ssm", False, partial(build_ssm, m, nm), partial(ssm_reference, m=m),
                            {"m": m}, f"static segment multiplier, {m}-bit segments of A and B"))
    register(DesignSpec("mul8u_kulkarni", "kulkarni", False, partial(build_kulkarni, "mul8u_kulkarni"),
                        kulkarni_reference, {}, "Kulkarni 2x2 blocks (3*3=7), exact accumulation"))
    for s in (3, 4):
        nm = f"mul8u_etm_s{s}"
        register(DesignSpec(nm, "etm", False, partial(build_etm, s, nm), partial(etm_reference, s=s),
                            {"split": s}, f"error-tolerant multiplier split at bit {s}"))


_register_all()
