"""Numba kernel of `mapping.tiler.plan`: the same closed forms, one compiled loop over layers.

`mapping.gemm.pod_costs` + `mapping.tiler.plan_reference` (NumPy) are the readable reference;
this kernel must agree with them exactly on every integer and to rounding on the one float
(`util_fold_sum`); tests/mapping/test_fastplan.py holds it to that.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# per-layer integer totals, in this order
TOTALS = ("folds", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes", "ofmap_sram_reads",
          "ifmap_dram_bytes", "filter_dram_bytes", "ofmap_dram_bytes", "psum_dram_read_bytes",
          "pe_fold_sum", "pe_fold_capacity", "ifmap_footprint_bytes", "filter_footprint_bytes",
          "ofmap_footprint_bytes", "sram_footprint_bytes", "compute_cycles", "pods_used", "interconnect_bytes",
          "reduction_cycles", "vector_cycles", "dram_bytes", "memory_cycles", "total_cycles", "stall_cycles")
NT = len(TOTALS)
(T_FOLDS, T_IRD, T_FRD, T_OWR, T_ORD, T_IDR, T_FDR, T_ODR, T_PDR, T_PES, T_PEC, T_IFP, T_FFP, T_OFP, T_SFP,
 T_CMP, T_PODS, T_IC, T_RED, T_VEC, T_DRAM, T_MEM, T_TOT, T_STALL) = range(NT)

# per-pod scratch fields
(P_FOLDS, P_CYC, P_IRD, P_FRD, P_OWR, P_ORD, P_IDR, P_FDR, P_ODR, P_PDR, P_OUT, P_IFP, P_FFP, P_OFP, P_PES,
 P_PEC) = range(16)
NP_ = 16

# candidate kinds
C_NONE, C_N, C_M, C_GRID, C_K = 0, 1, 2, 3, 4
DF_CODE = {"os": 0, "ws": 1, "is": 2}


@njit(cache=True)
def _cdiv(a, b):
    return -(-a // b)


@njit(cache=True)
def _uniq(e, u, mk):
    return -(-(e * u) // max(mk, 1))


@njit(cache=True)
def _split(total, parts, gran, p):
    units = _cdiv(total, gran)
    if units >= parts:
        gr = gran
    else:
        gr = 1
        units = total
    base = units // parts
    extra = units % parts
    first = p * base + min(p, extra)
    cnt = base + (1 if p < extra else 0)
    return min(first * gr, total), min((first + cnt) * gr, total)


@njit(cache=True)
def _pod(g, m, n, k, u, mk, R, C, df, quirk, half_i, half_f, half_o, cap_i, cap_f, cap_o, wb, pb, keep, res):
    for i in range(NP_):
        res[i] = 0
    if g <= 0 or m <= 0 or n <= 0 or k <= 0:
        return 0.0
    if df == 0:
        sr, sc, t = m, n, k
    elif df == 1:
        sr, sc, t = k, n, m
    else:
        sr, sc, t = k, m, n
    rf = _cdiv(sr, R)
    cf = _cdiv(sc, C)
    F = rf * cf
    r_full = sr // R
    r_rem = sr % R
    c_full = sc // C
    c_rem = sc % C
    r_max = min(sr, R)
    c_max = min(sc, C)
    a_tile = _uniq(m * k, u, mk)
    rr = 1 if r_rem > 0 else 0
    cr = 1 if c_rem > 0 else 0
    if df == 0:
        a_once = r_full * _uniq(R * t, u, mk) + rr * _uniq(r_rem * t, u, mk)
        a_res = a_tile * wb <= half_i
        a_dram = (a_once if a_res else a_once * cf) * wb
        b_fits = t * c_max * wb <= half_f
        b_dram = (sc * t if b_fits else sc * t * rf) * wb
        c_dram = sr * sc * wb
        psum = 0
        sram_i = t * sr * cf
        sram_f = t * sc * rf
        sram_o = sr * sc + (F * (R + C) if quirk else 0)
        sram_o_rd = 0
        fp_i = a_tile * wb if a_res else 2 * _uniq(r_max * t, u, mk) * wb
        fp_f = 2 * t * c_max * wb
        fp_o = 2 * r_max * c_max * wb
    else:
        if df == 1:
            b_dram = sr * sc * wb
            s_once = r_full * _uniq(t * R, u, mk) + rr * _uniq(t * r_rem, u, mk)
            s_res = a_tile * wb <= half_i
            a_dram = (s_once if s_res else s_once * cf) * wb
            fp_i = a_tile * wb if s_res else 2 * _uniq(t * r_max, u, mk) * wb
            fp_f = 2 * r_max * c_max * wb
            sram_i = t * sr * cf
            sram_f = sr * sc
        else:
            stat = (r_full * c_full * _uniq(R * C, u, mk) + r_full * cr * _uniq(R * c_rem, u, mk)
                    + rr * c_full * _uniq(r_rem * C, u, mk) + rr * cr * _uniq(r_rem * c_rem, u, mk))
            a_dram = stat * wb
            b_res = sr * t * wb <= half_f
            b_dram = (sr * t if b_res else sr * t * cf) * wb
            fp_i = 2 * _uniq(r_max * c_max, u, mk) * wb
            fp_f = sr * t * wb if b_res else 2 * r_max * t * wb
            sram_i = sr * sc
            sram_f = t * sr * cf
        sram_o = t * sc * rf
        if quirk:
            c_dram = t * sc * rf * wb
            psum = 0
            sram_o_rd = 0
            fp_o = 2 * t * c_max * wb
        else:
            acc = t * c_max * pb <= half_o
            spill = t * sc * (rf - 1) * pb
            c_dram = t * sc * wb if acc else spill + t * sc * wb
            psum = 0 if acc else spill
            sram_o_rd = t * sc * (rf - 1)
            fp_o = t * c_max * pb if acc else 2 * t * c_max * pb
    if keep:
        c_dram = 0
        psum = 0
    lead = 0 if df == 0 else R
    if quirk:
        cyc = g * (F * (lead + R + C + t - 2) - 1)
    else:
        cyc = lead + (g * F - 1) * max(t, R) + t + R + C - 2
    res[P_FOLDS] = g * F
    res[P_CYC] = cyc
    res[P_IRD] = g * sram_i
    res[P_FRD] = g * sram_f
    res[P_OWR] = g * sram_o
    res[P_ORD] = g * sram_o_rd
    res[P_IDR] = g * a_dram
    res[P_FDR] = g * b_dram
    res[P_ODR] = g * c_dram
    res[P_PDR] = g * psum
    res[P_OUT] = g * m * n * wb
    res[P_IFP] = min(fp_i, cap_i)
    res[P_FFP] = min(fp_f, cap_f)
    res[P_OFP] = min(fp_o, cap_o)
    res[P_PES] = g * sr * sc
    res[P_PEC] = g * F * R * C
    per_fold = lead + R + C + t - 2 + (0 if df == 0 else C - 1)
    return float(g * sr * sc * t) / float(max(per_fold, 1)) / (R * C)


@njit(cache=True)
def _ranges(ckind, pr, pc, G, M, N, K, P, gM, gN, gK, p, out):
    out[0] = 0
    out[1] = G
    out[2] = 0
    out[3] = M
    out[4] = 0
    out[5] = N
    out[6] = 0
    out[7] = K
    if ckind == C_NONE:
        if p > 0:
            out[1] = 0
    elif ckind == C_M:
        out[2], out[3] = _split(M, P, gM, p)
    elif ckind == C_K:
        out[6], out[7] = _split(K, P, gK, p)
    elif ckind == C_N:
        if G > 1:
            out[0], out[1] = _split(G, P, 1, p)
        else:
            out[4], out[5] = _split(N, P, gN, p)
    else:  # grid
        i = p // pc
        j = p % pc
        out[2], out[3] = _split(M, pr, gM, i)
        if G > 1:
            out[0], out[1] = _split(G, pc, 1, j)
        else:
            out[4], out[5] = _split(N, pc, gN, j)


@njit(cache=True)
def plan_kernel(groups, m, n, k, uniq, vec, vec_ops, in_elems, out_elems, cand_kind, cand_pr, cand_pc,
                P, R, C, df, quirk, gM, gN, gK, half_i, half_f, half_o, cap_i, cap_f, cap_o, wb, pb,
                dram_bw, ic_bw):
    """Cost every candidate split of every layer and keep the fastest (ties: first candidate)."""
    L = groups.shape[0]
    S = cand_kind.shape[0]
    best = np.zeros(L, dtype=np.int64)
    tot = np.zeros((L, NT), dtype=np.int64)
    util = np.zeros(L, dtype=np.float64)
    pod_out = np.zeros((L, P, 4), dtype=np.int64)  # compute_cycles, folds, dram_bytes, output_bytes
    ranges = np.zeros((L, P, 8), dtype=np.int64)
    res = np.zeros(NP_, dtype=np.int64)
    cur = np.zeros(NT, dtype=np.int64)
    cur_pod = np.zeros((P, 4), dtype=np.int64)
    cur_rng = np.zeros((P, 8), dtype=np.int64)
    rng = np.zeros(8, dtype=np.int64)
    for li in range(L):
        if vec[li]:
            tot[li, T_IDR] = in_elems[li] * wb
            tot[li, T_ODR] = out_elems[li] * wb
            tot[li, T_IRD] = in_elems[li]
            tot[li, T_OWR] = out_elems[li]
            v = _cdiv(vec_ops[li], C * P)
            tot[li, T_VEC] = v
            d = tot[li, T_IDR] + tot[li, T_ODR]
            tot[li, T_DRAM] = d
            mem = np.int64(math.ceil(d / dram_bw))
            tot[li, T_MEM] = mem
            tot[li, T_TOT] = max(v, mem)
            tot[li, T_STALL] = tot[li, T_TOT] - v
            continue
        G, M, N, K = groups[li], m[li], n[li], k[li]
        mk = M * K
        best_tot = -1
        for s in range(S):
            for j in range(NT):
                cur[j] = 0
            cur_util = 0.0
            nwork = 0
            ksplit = cand_kind[s] == C_K
            # pods of an even split mostly get the same tile: cost a tile once and reuse it (_pod is pure)
            prev_ge, prev_me, prev_ne, prev_ke, prev_keep, uf = -1, -1, -1, -1, False, 0.0
            for p in range(P):
                _ranges(cand_kind[s], cand_pr[s], cand_pc[s], G, M, N, K, P, gM, gN, gK, p, rng)
                for j in range(8):
                    cur_rng[p, j] = rng[j]
                ge, me, ne, ke = rng[1] - rng[0], rng[3] - rng[2], rng[5] - rng[4], rng[7] - rng[6]
                working = ge > 0 and me > 0 and ne > 0 and ke > 0
                if working:
                    nwork += 1
                keep = ksplit and working and nwork > 1
                if (ge != prev_ge or me != prev_me or ne != prev_ne or ke != prev_ke or keep != prev_keep):
                    uf = _pod(ge, me, ne, ke, uniq[li], mk, R, C, df, quirk, half_i, half_f, half_o, cap_i, cap_f,
                              cap_o, wb, pb, keep, res)
                    prev_ge, prev_me, prev_ne, prev_ke, prev_keep = ge, me, ne, ke, keep
                cur_util += uf
                cur[T_FOLDS] += res[P_FOLDS]
                cur[T_IRD] += res[P_IRD]
                cur[T_FRD] += res[P_FRD]
                cur[T_OWR] += res[P_OWR]
                cur[T_ORD] += res[P_ORD]
                cur[T_IDR] += res[P_IDR]
                cur[T_FDR] += res[P_FDR]
                cur[T_ODR] += res[P_ODR]
                cur[T_PDR] += res[P_PDR]
                cur[T_PES] += res[P_PES]
                cur[T_PEC] += res[P_PEC]
                cur[T_IFP] = max(cur[T_IFP], res[P_IFP])
                cur[T_FFP] = max(cur[T_FFP], res[P_FFP])
                cur[T_OFP] = max(cur[T_OFP], res[P_OFP])
                cur[T_SFP] = max(cur[T_SFP], res[P_IFP] + res[P_FFP] + res[P_OFP])
                cur[T_CMP] = max(cur[T_CMP], res[P_CYC])
                if res[P_CYC] > 0:
                    cur[T_PODS] += 1
                if keep:
                    cur[T_IC] += res[P_OUT] // wb * pb
                cur_pod[p, 0] = res[P_CYC]
                cur_pod[p, 1] = res[P_FOLDS]
                cur_pod[p, 2] = res[P_IDR] + res[P_FDR] + res[P_ODR] + res[P_PDR]
                cur_pod[p, 3] = res[P_OUT]
            cur[T_RED] = np.int64(math.ceil(cur[T_IC] / ic_bw))
            d = cur[T_IDR] + cur[T_FDR] + cur[T_ODR] + cur[T_PDR]
            cur[T_DRAM] = d
            cur[T_MEM] = np.int64(math.ceil(d / dram_bw))
            cur[T_TOT] = max(cur[T_CMP], cur[T_MEM]) + cur[T_RED]
            cur[T_STALL] = cur[T_TOT] - cur[T_CMP]
            if best_tot < 0 or cur[T_TOT] < best_tot:
                best_tot = cur[T_TOT]
                best[li] = s
                for j in range(NT):
                    tot[li, j] = cur[j]
                util[li] = cur_util
                for p in range(P):
                    for j in range(4):
                        pod_out[li, p, j] = cur_pod[p, j]
                    for j in range(8):
                        ranges[li, p, j] = cur_rng[p, j]
    return best, tot, util, pod_out, ranges
