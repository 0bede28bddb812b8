"""Exact 8x8 multipliers: unsigned array, Dadda and Wallace trees, signed Baugh-Wooley."""

from __future__ import annotations

import numpy as np

from ..builder import Builder, Word
from ..netlist import CONST1, Netlist
from . import DesignSpec, register

N = 8
W = 2 * N


def partial_products(b: Builder, a: Word, bw: Word) -> list[list[int]]:
    """pp[j][i] = a_i AND b_j (row j is weight 2^j, column i weight 2^i)."""
    return [[b.and2(a[i], bw[j]) for i in range(len(a))] for j in range(len(bw))]


def rows_to_columns(rows: list[Word], offsets: list[int], width: int = W) -> list[Word]:
    """Place each row at its bit offset in a column matrix of `width` columns."""
    cols: list[Word] = [[] for _ in range(width)]
    for row, off in zip(rows, offsets):
        for i, bit in enumerate(row):
            if off + i < width:
                cols[off + i].append(bit)
    return cols


def build_array_unsigned(name: str = "mul8u_array") -> Netlist:
    """Unsigned carry-save array multiplier with a ripple-carry final adder."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    pp = partial_products(b, a, bw)
    rows = [[0] * j + pp[j] for j in range(N)]
    b.output("O", b.array_sum_rows(rows, W), W)
    return b.finish()


def build_tree_unsigned(method: str, name: str) -> Netlist:
    """Unsigned Dadda or Wallace tree multiplier with a ripple-carry final adder."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    pp = partial_products(b, a, bw)
    cols = rows_to_columns(pp, list(range(N)))
    b.output("O", b.sum_columns(cols, W, method), W)
    return b.finish()


def baugh_wooley_bits(b: Builder, a: Word, bw: Word) -> list[list[int]]:
    """Modified Baugh-Wooley partial products: rows[j][i] has weight 2^(i+j).

    a*b = sum_{i,j<7} a_i b_j 2^(i+j) + a7 b7 2^14 + sum_{i<7} ~(a_i b7) 2^(i+7)
          + sum_{j<7} ~(a7 b_j) 2^(j+7) + 2^8 + 2^15   (mod 2^16)
    The constant 2^8 + 2^15 is added separately (see BW_CONSTANT).
    """
    rows: list[list[int]] = []
    for j in range(N):
        row = []
        for i in range(N):
            if (i == N - 1) != (j == N - 1):
                row.append(b.nand2(a[i], bw[j]))
            else:
                row.append(b.and2(a[i], bw[j]))
        rows.append(row)
    return rows


BW_CONSTANT = (1 << N) + (1 << (W - 1))


def baugh_wooley_columns(b: Builder, a: Word, bw: Word) -> list[Word]:
    """The Baugh-Wooley bit matrix as columns (constant bits included)."""
    rows = baugh_wooley_bits(b, a, bw)
    cols = rows_to_columns(rows, list(range(N)))
    cols[N].append(CONST1)
    cols[W - 1].append(CONST1)
    return cols


def build_baugh_wooley(method: str, name: str) -> Netlist:
    """Signed Baugh-Wooley multiplier, reduced as an array ("array") or a Dadda tree ("dadda")."""
    b = Builder(name)
    a, bw = b.input("A", N), b.input("B", N)
    if method == "array":
        rows = [[0] * j + r for j, r in enumerate(baugh_wooley_bits(b, a, bw))]
        rows.append(b.const_word(BW_CONSTANT, W))
        out = b.array_sum_rows(rows, W)
    else:
        out = b.sum_columns(baugh_wooley_columns(b, a, bw), W, method)
    b.output("O", out, W)
    return b.finish()


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The exact product."""
    return a * b


register(DesignSpec("mul8u_array", "exact", False, build_array_unsigned, exact_product,
                    {}, "exact unsigned carry-save array multiplier"))
register(DesignSpec("mul8u_dadda", "exact", False, lambda: build_tree_unsigned("dadda", "mul8u_dadda"),
                    exact_product, {}, "exact unsigned Dadda-tree multiplier"))
register(DesignSpec("mul8u_wallace", "exact", False, lambda: build_tree_unsigned("wallace", "mul8u_wallace"),
                    exact_product, {}, "exact unsigned Wallace-tree multiplier"))
register(DesignSpec("mul8s_bw_array", "exact", True, lambda: build_baugh_wooley("array", "mul8s_bw_array"),
                    exact_product, {}, "exact signed Baugh-Wooley array multiplier"))
register(DesignSpec("mul8s_bw_dadda", "exact", True, lambda: build_baugh_wooley("dadda", "mul8s_bw_dadda"),
                    exact_product, {}, "exact signed Baugh-Wooley multiplier with a Dadda tree"))
