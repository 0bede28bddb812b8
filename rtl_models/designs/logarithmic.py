"""Logarithmic and rounding-based approximate multipliers: Mitchell, MBM, ILM, RoBA.

Every design here is symmetric in value: A (port A, the activation) and B (port B, the
weight) get the same treatment, so ref(a, b) == ref(b, a). Where the *hardware* is not
symmetric (ILM's basic block) the docstring says which operand feeds which shifter.

- Mitchell (``mul8u_mitchell``; J. N. Mitchell, IRE Trans. Electron. Comput., 1962). For each
  operand x = 2^k (1 + f): a leading-one detector gives the characteristic k (3 bits) and the
  mantissa fraction f, normalized by a barrel shifter to a fixed 7-bit fraction field
  (f = (x - 2^k) / 2^k exactly, because x has at most k <= 7 bits below its leading one).
  log(A) + log(B) ~= (k1 + k2) + (f1 + f2). Antilog: if f1 + f2 < 1 the product is
  2^(k1+k2) (1 + f1 + f2), else 2^(k1+k2+1) (f1 + f2) -- in both cases
  (1.frac) << (k1 + k2 + carry), frac being the low 7 bits of the 8-bit sum f1 + f2.
  Fixed point: 7 fraction bits, no rounding. With 7 bits the fractions are exact and the
  shifted result (1.frac) * 2^(k1+k2+carry) is always an integer (the lowest set fraction
  bit of f_i has weight >= 2^-k_i), so dropping the 7 bits below the binary point loses
  nothing: the table is exactly Mitchell's real-valued approximation. A zero operand gives 0
  (the mantissa word is gated by A != 0 AND B != 0). Exhaustive 8-bit figures: MRE 3.79 %,
  worst relative error 11.1 % (1/9, at f1 = f2 = 1/2), always an underestimate.
- Mitchell with truncated fractions (``mul8u_mitchell_t{t}``): the same, but each operand keeps
  only the top t of its 7 fraction bits (truncation, no rounding). Operands below 2^(t+1)
  lose nothing. The result is still an exact integer (fewer fraction bits, same argument).
- MBM (``mul8u_mbm``; Saadat, Bokhari, Parameswaran, "Minimally biased multipliers for
  approximate integer and floating-point multiplication", IEEE TCAD 37(11), 2018 -- the
  brief says TVLSI; it is TCAD, ESWEEK/CODES+ISSS special issue). Mitchell's error in units of
  2^(k1+k2) is f1 f2 when f1 + f2 < 1 and (1 - f1)(1 - f2) when f1 + f2 >= 1; both have
  mean 1/12 over their triangle. MBM adds an error-reduction constant C ~= 1/12 to the
  mantissa sum: C = 2^-4 + 2^-6 = 0.078125 (1/12 = 0.000101010...b truncated to the 7-bit
  fraction field) when there is no carry, and C/2 = 2^-5 + 2^-7 when there is a carry (the
  carry case is scaled by 2 in the antilog, so half the constant gives the same absolute
  correction). Source of the exact constants and the corner case: the authors' group's
  public reference code (ApproxTrain, `FPmultMBM_fast*.inl`: ``CorrTem = 2^-4+2^-6``, shifted
  right by the carry; "cornercase: overflow: skip error correction term" when the corrected
  carry-case fraction reaches 1). We follow it exactly: if the carry is set and frac + C/2
  overflows the 7-bit field, the correction is dropped (this also keeps 255 * 255 inside 16
  bits). Without a carry, frac + C may reach 1 (up to 137/128); then the mantissa 1 + frac + C
  simply exceeds 2 and is shifted as is. Bits below 2^0 after the final shift are truncated
  (floor): for small operands part of C falls below the binary point, which is the only
  deviation from the real-valued MBM and is the natural fixed-point hardware behaviour.
  Simplification: one 7-bit constant pair; no rounding of the truncated product bits.
- ILM (``mul8u_ilm_c{c}``; Babic, Avramovic, Bulic, "An iterative logarithmic multiplier",
  Microprocessors and Microsystems 35(1), 2011). Basic block:
  P0 = 2^(k1+k2) + (N1 - 2^k1) 2^k2 + (N2 - 2^k2) 2^k1, i.e. the exact product minus the error
  term E0 = (N1 - 2^k1)(N2 - 2^k2). With c correction terms the same basic block is applied
  c times to the residues (N1 - 2^k1, N2 - 2^k2) and the results are summed. A block with a
  zero operand contributes 0. We compute the block as (N1 << k2) + ((N2 - 2^k2) << k1) --
  the same value (N1 = 2^k1 + residue), one shifter and one adder term fewer. Port A feeds
  the first shifter (shifted by B's characteristic), B's residue the second (shifted by A's).
  All block outputs are summed in one Dadda carry-save tree plus a ripple-carry adder. c = 0 is
  the bare basic block (worst relative error < 25 %), c = 1 stays below 6.25 %, c = 2 below
  1.5625 %. ILM always underestimates.
- RoBA (``mul8u_roba``; Zendegani, Kamal, Bahadori, Afzali-Kusha, Pedram, IEEE TVLSI 25(2),
  2017). A * B ~= Ar * B + A * Br - Ar * Br, Ar and Br the operands rounded to the nearest
  power of two; the omitted term is (A - Ar)(B - Br). Tie rule (as in the paper): the
  midpoint 3 * 2^(p-2) between 2^(p-1) and 2^p rounds *up* to 2^p; in bits, x rounds to
  2^(k+1) when the bit just below its leading one (bit k-1) is set, else to 2^k; 1 stays 1,
  0 stays 0. Ar * B and A * Br are barrel shifts; Ar * Br = 2^(e), e = kA + kB, enters as the
  16-bit two's-complement word -2^e (a thermometer code from a decoder of e: bits e..15 set),
  and the three rows are summed by a Dadda tree and a ripple-carry adder, modulo 2^16
  (the true result always lies in [0, 65535]; e = 16 gives 2^16 = 0 mod 2^16).
- Signed RoBA (``mul8s_roba``; the paper's sign-magnitude S-RoBA): |A| and |B| by exact
  two's-complement negation (|-128| = 128 still fits 8 unsigned bits), the unsigned RoBA core
  on the magnitudes, and the product negated when the signs differ.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ..builder import Builder, Word
from ..netlist import CONST0, CONST1, Netlist
from . import DesignSpec, register

N = 8  # operand bits
W = 2 * N  # product bits
F = N - 1  # fraction bits of the normalized mantissa

# MBM error-reduction constants on the 7-bit fraction field (see the module docstring).
MBM_C_NO_CARRY = 0b0001010  # 2^-4 + 2^-6 = 10/128 ~= 1/12
MBM_C_CARRY = 0b0000101  # half of it: 2^-5 + 2^-7


# -- behavioural references (NumPy, int64 operand values) ---------------------------------------
def _lod(x: np.ndarray) -> np.ndarray:
    """Position of the leading one (0 for x = 0 and x = 1), integer arithmetic only."""
    k = np.zeros_like(x)
    for i in range(1, N + 1):
        k += (x >> i) > 0
    return k


def mitchell_reference(a: np.ndarray, b: np.ndarray, t: int = F, mbm: bool = False) -> np.ndarray:
    """Mitchell (or MBM with `mbm`) with fractions truncated to `t` of 7 bits (unsigned)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    k1, k2 = _lod(a), _lod(b)
    keep = ((1 << t) - 1) << (F - t)
    f1 = ((np.maximum(a - (1 << k1), 0)) << (F - k1)) & keep
    f2 = ((np.maximum(b - (1 << k2), 0)) << (F - k2)) & keep
    s = f1 + f2
    carry = s >> F
    frac = s & ((1 << F) - 1)
    if mbm:
        corrected = frac + np.where(carry == 1, MBM_C_CARRY, MBM_C_NO_CARRY)
        frac = np.where((carry == 1) & (corrected >= (1 << F)), frac, corrected)
    p = (((1 << F) + frac) << (k1 + k2 + carry)) >> F
    return np.where((a == 0) | (b == 0), 0, p)


def ilm_reference(a: np.ndarray, b: np.ndarray, corrections: int = 1) -> np.ndarray:
    """Iterative logarithmic multiplier with `corrections` correction terms (unsigned)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    total = np.zeros(np.broadcast(a, b).shape, dtype=np.int64)
    for _ in range(corrections + 1):
        k1, k2 = _lod(a), _lod(b)
        r1 = np.where(a > 0, a - (1 << k1), 0)
        r2 = np.where(b > 0, b - (1 << k2), 0)
        block = (1 << (k1 + k2)) + (r1 << k2) + (r2 << k1)
        total += np.where((a == 0) | (b == 0), 0, block)
        a, b = r1, r2
    return total


def round_pow2(x: np.ndarray) -> np.ndarray:
    """x rounded to the nearest power of two, ties (3 * 2^(p-2)) up; 0 stays 0."""
    x = np.asarray(x, dtype=np.int64)
    k = _lod(x)
    below = np.where(k > 0, (x >> np.maximum(k - 1, 0)) & 1, 0)
    return np.where(x == 0, 0, 1 << (k + below))


def roba_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RoBA: Ar*B + A*Br - Ar*Br (unsigned)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ar, br = round_pow2(a), round_pow2(b)
    return ar * b + a * br - ar * br


def roba_signed_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sign-magnitude RoBA: sign(A) sign(B) RoBA(|A|, |B|) (two's complement operands)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    mag = roba_reference(np.abs(a), np.abs(b))
    return np.where((a < 0) != (b < 0), -mag, mag)


# -- gate-level helpers ----------------------------------------------------------------------------
class _SharingBuilder(Builder):
    """A Builder that shares inverters: NOT x is built once per net (and NOT NOT x is x).

    Barrel shifters and muxes with constant inputs fold into AND/OR gates that each ask for
    the inverse of the same select line; without sharing every one of them gets its own INV.
    """

    def __init__(self, name: str):
        super().__init__(name)
        self._inverse: dict[int, int] = {}

    def inv(self, a: int) -> int:
        """NOT a, one inverter per net."""
        if a not in self._inverse:
            y = super().inv(a)
            self._inverse[a] = y
            self._inverse.setdefault(y, a)
        return self._inverse[a]


def _clear_leading_one(b: Builder, x: Word, onehot: Word) -> Word:
    """x with its leading one cleared (x - 2^k); the top bit folds to 0 when it is the one-hot."""
    return [b.xor2(xi, oi) for xi, oi in zip(x, onehot)]


def _decode(b: Builder, bits: Word, n: int, enable: int = CONST1) -> Word:
    """One-hot decoder: out[v] = enable AND (bits == v) for v < n (shared half decoders)."""
    if len(bits) == 1:
        return [b.and2(enable, b.inv(bits[0])), b.and2(enable, bits[0])][:n]
    half = len(bits) // 2
    lo_n = 1 << half
    lo = _decode(b, bits[:half], min(n, lo_n))
    hi = _decode(b, bits[half:], -(-n // lo_n), enable)  # the enable costs one AND per hi output
    return [b.and2(lo[v % lo_n], hi[v // lo_n]) for v in range(n)]


def _columns(rows: list[Word], width: int = W) -> list[Word]:
    """Stack rows (already at their weights) into a column matrix of `width` columns."""
    cols: list[Word] = [[] for _ in range(width)]
    for row in rows:
        for i, bit in enumerate(row[:width]):
            cols[i].append(bit)
    return cols


# -- Mitchell / MBM --------------------------------------------------------------------------------
def _log_operand(b: Builder, x: Word, t: int) -> tuple[Word, Word, int]:
    """(7-bit fraction truncated to its top t bits, 3-bit characteristic k, x != 0)."""
    _onehot, k, nonzero = b.leading_one(x)
    # shift left by 7 - k (= NOT k on 3 bits) puts the leading one on bit 7; below it is f
    normalized = b.shift_left(x, [b.inv(kb) for kb in k], N)
    frac = [CONST0] * (F - t) + normalized[F - t:F]
    return frac, k, nonzero


def build_mitchell(name: str, t: int = F, mbm: bool = False) -> Netlist:
    """Mitchell's logarithmic multiplier (MBM with `mbm`), fractions truncated to t bits."""
    b = _SharingBuilder(name)
    a, bw = b.input("A", N), b.input("B", N)
    fa, ka, nza = _log_operand(b, a, t)
    fb, kb, nzb = _log_operand(b, bw, t)
    s = b.ripple_add(fa, fb)  # 8 bits: 7 fraction bits and the carry (f1 + f2 >= 1)
    carry, frac = s[F], s[:F]
    if mbm:
        nc = b.inv(carry)
        # C/2 with a carry, C without (the two constants have disjoint bits)
        const = [carry if (MBM_C_CARRY >> i) & 1 else nc if (MBM_C_NO_CARRY >> i) & 1 else CONST0
                 for i in range(F)]
        corrected = b.ripple_add(frac, const)
        over = corrected[F]
        # mantissa 1.frac + C: bits 7, 8 are 1 + overflow; carry & overflow drops the correction
        mant = b.mux_word(b.and2(carry, over), corrected[:F] + [b.inv(over), over], frac + [CONST1, CONST0])
    else:
        mant = frac + [CONST1]
    mant = b.and_word(b.and2(nza, nzb), mant)
    shift = b.ripple_add(ka, kb, cin=carry)  # k1 + k2 + carry, 4 bits (<= 15)
    product = b.shift_left(mant, shift, W + F)[F:]  # drop the 7 bits below the binary point
    b.output("O", product, W)
    return b.finish()


# -- ILM ------------------------------------------------------------------------------------------
def _ilm_block(b: Builder, x: Word, y: Word) -> tuple[list[Word], Word, Word]:
    """Basic block rows (x << k_y, residue_y << k_x) and the residues of x and y."""
    ohx, kx, nzx = b.leading_one(x)
    ohy, ky, nzy = b.leading_one(y)
    rx = _clear_leading_one(b, x, ohx)
    ry = _clear_leading_one(b, y, ohy)
    row1 = b.shift_left(b.and_word(nzy, x), ky, W)  # 2^(kx+ky) + rx 2^ky
    row2 = b.shift_left(b.and_word(nzx, ry), kx, W)  # ry 2^kx
    return [row1, row2], rx, ry


def build_ilm(name: str, corrections: int) -> Netlist:
    """Iterative logarithmic multiplier: a basic block plus `corrections` blocks on the residues."""
    b = _SharingBuilder(name)
    x, y = b.input("A", N), b.input("B", N)
    rows: list[Word] = []
    for _ in range(corrections + 1):
        block_rows, x, y = _ilm_block(b, x, y)
        rows.extend(block_rows)
    b.output("O", b.sum_columns(_columns(rows), W), W)
    return b.finish()


# -- RoBA -----------------------------------------------------------------------------------------
def _round_exponent(b: Builder, x: Word) -> tuple[Word, int]:
    """(exponent of x rounded to the nearest power of two, ties up, 4 bits; x != 0)."""
    onehot, k, nonzero = b.leading_one(x)
    up = b.or_reduce([b.and2(onehot[i], x[i - 1]) for i in range(1, len(x))])
    return b.ripple_add(k, [], cin=up), nonzero


def _roba_core(b: Builder, a: Word, bw: Word) -> Word:
    """Unsigned RoBA of two 8-bit words, as a 16-bit word."""
    ea, nza = _round_exponent(b, a)
    eb, nzb = _round_exponent(b, bw)
    ar_b = b.shift_left(b.and_word(nza, bw), ea, W)  # Ar * B (Ar = 0 when A = 0)
    a_br = b.shift_left(b.and_word(nzb, a), eb, W)  # A * Br
    e = b.ripple_add(ea, eb)  # 5 bits, <= 16
    onehot = _decode(b, e, W, enable=b.and2(nza, nzb))
    # -2^e mod 2^16: bits e..15 set (a thermometer code); e = 16 or a zero operand give 0
    minus_ar_br: Word = []
    acc = CONST0
    for d in onehot:
        acc = b.or2(acc, d)
        minus_ar_br.append(acc)
    return b.sum_columns(_columns([ar_b, a_br, minus_ar_br]), W)


def build_roba(name: str) -> Netlist:
    """Unsigned RoBA multiplier."""
    b = _SharingBuilder(name)
    a, bw = b.input("A", N), b.input("B", N)
    b.output("O", _roba_core(b, a, bw), W)
    return b.finish()


def _conditional_negate(b: Builder, x: Word, neg: int, width: int) -> Word:
    """neg ? -x : x on `width` bits (x zero-extended): (x XOR neg) + neg."""
    x = list(x) + [CONST0] * (width - len(x))
    return b.ripple_add([b.xor2(xi, neg) for xi in x[:width]], [], cin=neg, width=width)


def build_roba_signed(name: str) -> Netlist:
    """Signed (sign-magnitude) RoBA multiplier."""
    b = _SharingBuilder(name)
    a, bw = b.input("A", N), b.input("B", N)
    sa, sb = a[N - 1], bw[N - 1]
    mag = _roba_core(b, _conditional_negate(b, a, sa, N), _conditional_negate(b, bw, sb, N))
    b.output("O", _conditional_negate(b, mag, b.xor2(sa, sb), W), W)
    return b.finish()


# -- registration ---------------------------------------------------------------------------------
def _register_all() -> None:
    register(DesignSpec("mul8u_mitchell", "mitchell", False, partial(build_mitchell, "mul8u_mitchell"),
                        mitchell_reference, {"t": F},
                        "Mitchell logarithmic multiplier, 7-bit fractions (exact antilog, no rounding)"))
    t = 4
    nm = f"mul8u_mitchell_t{t}"
    register(DesignSpec(nm, "mitchell", False, partial(build_mitchell, nm, t), partial(mitchell_reference, t=t),
                        {"t": t}, f"Mitchell logarithmic multiplier, fractions truncated to {t} bits"))
    register(DesignSpec("mul8u_mbm", "mbm", False, partial(build_mitchell, "mul8u_mbm", F, True),
                        partial(mitchell_reference, mbm=True), {"t": F, "c_no_carry": MBM_C_NO_CARRY / 128,
                                                                "c_carry": MBM_C_CARRY / 128},
                        "minimally biased Mitchell (Saadat et al. 2018), C = 2^-4+2^-6 (halved on carry)"))
    for c in (0, 1, 2):
        nm = f"mul8u_ilm_c{c}"
        register(DesignSpec(nm, "ilm", False, partial(build_ilm, nm, c), partial(ilm_reference, corrections=c),
                            {"corrections": c}, f"iterative logarithmic multiplier, {c} correction term(s)"))
    register(DesignSpec("mul8u_roba", "roba", False, partial(build_roba, "mul8u_roba"), roba_reference, {},
                        "rounding-based approximate multiplier (RoBA), ties round up"))
    register(DesignSpec("mul8s_roba", "roba", True, partial(build_roba_signed, "mul8s_roba"),
                        roba_signed_reference, {}, "sign-magnitude RoBA (S-RoBA), ties round up"))


_register_all()
