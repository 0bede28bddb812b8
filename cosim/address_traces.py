"""SCALE-Sim-format SRAM and DRAM address traces of an engine run (written on request).

For every layer and pod the engine's runs are replayed exactly (the same bandwidth changes at
the same cycles, `cosim.engine.replay_pod`) with their line and drain logs on, and the
demands are regenerated line by line and streamed to CSV (`traces.address`), a chunk of lines
at a time, so memory holds the logs (11 int64 per line) but never a whole demand matrix.

Files, per layer, pod and engine run (``layer003_<name>/pod2/`` or, for a grouped layer in
the scalesim convention, one ``group<g>/`` per group, as SCALE-Sim runs one layer per group):

* ``IFMAP_SRAM_TRACE.csv``, ``FILTER_SRAM_TRACE.csv``, ``OFMAP_SRAM_TRACE.csv``: SCALE-Sim's
  SRAM traces exactly (for a whole layer on one pod in the scalesim convention the files equal
  SCALE-Sim 3.0.0's, byte for byte; a test holds them to it): one row per array cycle before
  stalls, the cycle the row is served (request cycle plus the buffer's offset: its hit
  latency of 1 and any stall, for reads; the write stall for the ofmap), then one column per
  array row or column (OS: ifmap R, filter C; WS: ifmap R, filter C; IS: ifmap C, filter R;
  ofmap C) with the layer's address there, or -1. Cycles are the run's own (0 = its first line).
* ``IFMAP_DRAM_TRACE.csv``, ``FILTER_DRAM_TRACE.csv``: the words each read buffer takes from
  DRAM, B per row (-1 padded), in SCALE-Sim's fetch order. USER mode: the first fill (the
  active half's lines, rows stamped -rows .. -1) and then every prefetch k (the buffer lines
  that enter as the window slides, rows stamped back to back so that the last one lands at the
  prefetch clock p_k). CALC mode: the words first demanded in each buffer epoch, one row per
  line that fetched any, stamped with that line's request cycle. SCALE-Sim 3.0.0's own DRAM
  trace re-requests fixed fetch rows after the first prefetch (its bookkeeping sets the next
  fetch row from the request length alone), so these files follow its buffer model, not its
  trace file.
* ``OFMAP_DRAM_TRACE.csv``: the output words in the order the array wrote them, B_o per row,
  each drain's rows stamped one per cycle from the drain's start (the drain log). A drained
  row is counted as full, as SCALE-Sim counts it; rows flushed early hold fewer words in
  reality, so late rows may list words a little before they actually leave.

Addresses follow the mapping trace's convention: ifmap from 0 (the layer's padded input, per
group), filter from 10,000,000 (n * K + k), ofmap from 20,000,000 (m * N + n), with the
layer's own indices (a pod's tile keeps its place in the layer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from numba import njit

from traces.address import DRAM_FILES, SRAM_FILES, TraceWriter, estimate_bytes

from . import engine_core as ec
from .engine import EngineRun, replay_pod

FILTER_OFFSET = 10_000_000
OFMAP_OFFSET = 20_000_000
CHUNK_LINES = 1 << 15


@njit(cache=True)
def _sram_rows(prm, tab, lg, line0, line1, ibase, m0, n0, k0, k_layer, n_layer, oi, of, oo, calc_mem, calc_ep,
               calc_rows):
    """Demand rows of lines [line0, line1): oi / of / oo get (cycle, column addresses...), -1 empty.

    calc_mem / calc_ep (CALC mode, else size 1): the epoch replay; calc_rows gets, per line,
    the new DRAM words (ifmap in row 0.., filter after) and returns through column 0 counts."""
    df = prm[ec.P_DF]
    R = prm[ec.P_R]
    C = prm[ec.P_C]
    T = prm[ec.P_T]
    SR = prm[ec.P_SR]
    SC = prm[ec.P_SC]
    K = prm[ec.P_K]
    H = prm[ec.P_H]
    W = prm[ec.P_W]
    tk0 = prm[ec.P_TAB_K]
    rowf = prm[ec.P_ROWF]
    fpg = rowf * prm[ec.P_COLF]
    flen = prm[ec.P_FOLDLEN]
    delta = prm[ec.P_DELTA]
    nfolds = prm[ec.P_FOLDS]
    psacc = prm[ec.P_PSACC] == 1
    calc = calc_mem.shape[0] > 1
    for li in range(line1 - line0):
        line = line0 + li
        c = lg[line, 0]
        oi[li, 0] = c + lg[line, 1]
        of[li, 0] = c + lg[line, 2]
        oo[li, 0] = c + lg[line, 3]
        for j in range(1, oi.shape[1]):
            oi[li, j] = -1
        for j in range(1, of.shape[1]):
            of[li, j] = -1
        for j in range(1, oo.shape[1]):
            oo[li, j] = -1
        f_hi = line // delta
        if f_hi > nfolds - 1:
            f_hi = nfolds - 1
        f_lo = 0 if line < flen else (line - flen) // delta + 1
        for f in range(f_lo, f_hi + 1):
            tau = line - f * delta
            g = f // fpg
            rem = f - g * fpg
            fc = rem // rowf
            fr = rem - fc * rowf
            a = SR - fr * R
            if a > R:
                a = R
            b = SC - fc * C
            if b > C:
                b = C
            if df == 0:
                lo = tau - T + 1
                if lo < 0:
                    lo = 0
                hi = tau if tau < a - 1 else a - 1
                for r in range(lo, hi + 1):
                    tm = 3 * (fr * R + r)
                    tk = tk0 + 3 * (tau - r)
                    if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                        oi[li, 1 + r] = tab[tm] + tab[tk] + ibase
                hi = tau if tau < b - 1 else b - 1
                for cc in range(lo, hi + 1):
                    of[li, 1 + cc] = FILTER_OFFSET + (n0 + fc * C + cc) * k_layer + k0 + tau - cc
                base = tau - (T - 1)
                for cc in range(b):
                    rho = base - cc
                    if 0 <= rho < R and R - 1 - rho < a:
                        m = m0 + fr * R + R - 1 - rho
                        oo[li, 1 + cc] = OFMAP_OFFSET + m * n_layer + n0 + fc * C + cc
            else:
                lo = tau - R - T + 1
                if lo < 0:
                    lo = 0
                hi = tau - R
                if hi > a - 1:
                    hi = a - 1
                stat_row = R - 1 - tau
                if df == 1:
                    for r in range(lo, hi + 1):
                        tm = 3 * (tau - R - r)
                        tk = tk0 + 3 * (fr * R + r)
                        if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                            oi[li, 1 + r] = tab[tm] + tab[tk] + ibase
                    if tau < R and stat_row < a:
                        for cc in range(b):
                            of[li, 1 + cc] = FILTER_OFFSET + (n0 + fc * C + cc) * k_layer + k0 + fr * R + stat_row
                else:
                    if tau < R and stat_row < a:
                        tk = tk0 + 3 * (fr * R + stat_row)
                        for cc in range(b):
                            tm = 3 * (fc * C + cc)
                            if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                                oi[li, 1 + cc] = tab[tm] + tab[tk] + ibase
                    for r in range(lo, hi + 1):
                        of[li, 1 + r] = FILTER_OFFSET + (n0 + tau - R - r) * k_layer + k0 + fr * R + r
                if not (psacc and fr != rowf - 1):
                    base = tau - (2 * R - 1)
                    for cc in range(b):
                        t = base - cc
                        if 0 <= t < T:
                            if df == 1:
                                oo[li, 1 + cc] = OFMAP_OFFSET + (m0 + t) * n_layer + n0 + fc * C + cc
                            else:
                                oo[li, 1 + cc] = OFMAP_OFFSET + (m0 + fc * C + cc) * n_layer + n0 + t
        if calc:
            # CALC epochs (read_buffer_estimate_bw): a word not seen in the current epoch is read
            n_new = 0
            for o in range(2):
                src = oi if o == 0 else of
                pb = ec.P_RD + o * ec.P_RD_STRIDE
                items = prm[pb + ec.RD_ITEMS]
                for j in range(1, src.shape[1]):
                    v = src[li, j]
                    if v < 0:
                        continue
                    key = v - (0 if o == 0 else FILTER_OFFSET) + (0 if o == 0 else calc_ep[4])
                    if calc_mem[key] != calc_ep[o]:
                        calc_mem[key] = calc_ep[o]
                        calc_rows[li, 1 + n_new] = v
                        n_new += 1
                        calc_ep[2 + o] += 1
                        if calc_ep[2 + o] == items * ec.SETS_PER_HALF:
                            calc_ep[2 + o] = 0
                            calc_ep[o] += 1
            calc_rows[li, 0] = n_new


def _chunks(n_lines: int):
    for s in range(0, n_lines, CHUNK_LINES):
        yield s, min(n_lines, s + CHUNK_LINES)


def _widths(df: str, R: int, C: int) -> tuple[int, int, int]:
    """Columns of the ifmap, filter and ofmap SRAM traces (SCALE-Sim's demand matrices)."""
    return {"os": (R, C, C), "ws": (R, C, C), "is": (C, R, C)}[df]


def _real_filter(addr: np.ndarray, eng: ec.PodEngine, k_layer: int) -> np.ndarray:
    """Engine-internal filter addresses (group-stacked tile numbering) to the layer's."""
    m0, m1, n0, n1, k0, k1 = eng.tile
    local = (addr - int(eng.prm[ec.P_RD + ec.P_RD_STRIDE + ec.RD_BASE])) % max(1, int(eng.prm[ec.P_NFG]))
    n_t, k_t = np.divmod(local, eng.k)
    return FILTER_OFFSET + (n0 + n_t) * k_layer + k0 + k_t


def _real_ifmap(addr: np.ndarray, eng: ec.PodEngine) -> np.ndarray:
    stride = max(1, int(eng.prm[ec.P_NIFG]))
    return addr % stride + eng.ifmap_base


def _rows_of(words: np.ndarray, bw: int) -> np.ndarray:
    """Words cut into rows of bw, -1 padded (no cycle column yet)."""
    n = -(-len(words) // bw)
    out = np.full(n * bw, -1, dtype=np.int64)
    out[: len(words)] = words
    return out.reshape(n, bw)


def _write_engine(eng: ec.PodEngine, out: Path, k_layer: int, n_layer: int) -> list[Path]:
    """All six trace files of one engine run."""
    prm, spec = eng.prm, eng.spec
    df, R, C = spec.dataflow, spec.rows, spec.cols
    wi, wf, wo = _widths(df, R, C)
    lg = eng.line_log()
    n_lines = len(lg)
    m0, _, n0, _, k0, _ = eng.tile
    user = spec.bandwidth_mode == "user"
    files = []
    calc_mem = np.full(1, -1, dtype=np.int32)
    calc_ep = np.zeros(5, dtype=np.int64)  # epoch and words-in-epoch per operand, filter key base
    if not user:
        n_if = int(eng.ifmap_base) + int(eng.prm[ec.P_NIFG])
        calc_mem = np.full(n_if + n_layer * k_layer + 1, -1, dtype=np.int32)
        calc_ep[4] = n_if  # filter words follow the ifmap's in the stamp array
    out.mkdir(parents=True, exist_ok=True)
    writers = {op: TraceWriter(out / SRAM_FILES[op]) for op in ("ifmap", "filter", "ofmap")}
    calc_w = {op: TraceWriter(out / DRAM_FILES[op]) for op in ("ifmap", "filter")} if not user else {}
    ostream: list[np.ndarray] = []  # ofmap words in write order (for the drain rows)
    try:
        for s0, s1 in _chunks(n_lines):
            n = s1 - s0
            oi = np.empty((n, wi + 1), dtype=np.int64)
            of = np.empty((n, wf + 1), dtype=np.int64)
            oo = np.empty((n, wo + 1), dtype=np.int64)
            crow = np.zeros((n if not user else 1, 1 + wi + wf), dtype=np.int64)
            _sram_rows(prm, eng.tab, lg, s0, s1, eng.ifmap_base, m0, n0, k0, k_layer, n_layer, oi, of, oo,
                       calc_mem, calc_ep, crow)
            writers["ifmap"].write(oi)
            writers["filter"].write(of)
            writers["ofmap"].write(oo)
            vals = oo[:, 1:]
            ostream.append(vals[vals >= 0])
            if not user:
                has = crow[:, 0] > 0
                for op, lo_fn in (("ifmap", lambda v: (v >= 0) & (v < FILTER_OFFSET)),
                                  ("filter", lambda v: v >= FILTER_OFFSET)):
                    rows = []
                    for i in np.nonzero(has)[0]:
                        v = crow[i, 1:1 + crow[i, 0]]
                        v = v[lo_fn(v)]
                        if len(v):
                            r = _rows_of(v, ec.CALC_READ_BW)
                            rows.append(np.column_stack([np.full(len(r), lg[s0 + i, 0]), r]))
                    if rows:
                        calc_w[op].write(np.concatenate(rows))
        for w in list(writers.values()) + list(calc_w.values()):
            files.append(w.close())
    except BaseException:
        for w in list(writers.values()) + list(calc_w.values()):
            w.abort()
        raise
    if user:
        files += _user_dram_reads(eng, lg, out, k_layer)
    files.append(_ofmap_dram(eng, np.concatenate(ostream) if ostream else np.zeros(0, np.int64), out))
    return files


def _user_dram_reads(eng: ec.PodEngine, lg: np.ndarray, out: Path, k_layer: int) -> list[Path]:
    """USER mode: the first fill and every prefetch of each read buffer."""
    prm = eng.prm
    files = []
    for o, op in ((0, "ifmap"), (1, "filter")):
        pb = ec.P_RD + o * ec.P_RD_STRIDE
        rows_pf, cols_pf = int(prm[pb + ec.RD_PFR]), int(prm[pb + ec.RD_PFC])
        seq = np.empty(eng.groups * rows_pf * cols_pf, dtype=np.int32)
        v = ec._prefetch_sequence(prm, eng.tab, o, seq)
        seq = seq[:v].astype(np.int64)
        real = _real_ifmap(seq, eng) if o == 0 else _real_filter(seq, eng, k_layer)
        eps, nl = int(prm[pb + ec.RD_EPS]), int(prm[pb + ec.RD_NL])
        na, npl = int(prm[pb + ec.RD_A]), int(prm[pb + ec.RD_PL])
        bw0 = eng._init_bw[o]
        with TraceWriter(out / DRAM_FILES[op]) as w:
            first = _rows_of(real[: na * eps], bw0)
            w.write(np.column_stack([np.arange(-len(first), 0), first]))
            # prefetch events from the line log: (count after, clock after, length) per line
            cnt = lg[:, 5 + 2 * o]
            clock = lg[:, 6 + 2 * o]
            rate = lg[:, 9 + o]
            prev = 0
            for i in np.nonzero(np.diff(np.concatenate([[0], cnt])) > 0)[0]:
                n_after, p_after, bw = int(cnt[i]), int(clock[i]), int(rate[i])
                length = -(-int(prm[pb + ec.RD_PFSZ]) // bw)
                for k in range(prev + 1, n_after + 1):
                    p_k = p_after - (n_after - k) * (length + 1)
                    s = ((k - 1) * npl) % nl
                    lines = (s + na + np.arange(npl)) % nl
                    idx = (lines[:, None] * eps + np.arange(eps)[None, :]).ravel()
                    words = real[idx[idx < v]]
                    r = _rows_of(words, bw)
                    w.write(np.column_stack([p_k - len(r) + 1 + np.arange(len(r)), r]))
                prev = n_after
        files.append(out / DRAM_FILES[op])
    return files


def _ofmap_dram(eng: ec.PodEngine, stream: np.ndarray, out: Path) -> Path:
    """Drained ofmap rows: the write stream, B_o words per row, one row per cycle per drain."""
    dl = eng.drain_log()
    bw = int(eng.prm[ec.P_WR + ec.WR_BW])
    pos = 0
    with TraceWriter(out / DRAM_FILES["ofmap"]) as w:
        for x, nl in dl.tolist():
            take = stream[pos: pos + nl * bw]
            pos += len(take)
            r = _rows_of(take, bw) if len(take) else np.full((0, bw), -1, dtype=np.int64)
            if len(r):
                w.write(np.column_stack([x + np.arange(len(r)), r]))
    return out / DRAM_FILES["ofmap"]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]


def estimate_address_trace_bytes(run: EngineRun, trace) -> dict:
    """Upper bounds on the address traces' sizes (bytes), before writing any: {"sram", "dram", "total"}."""
    hw = run.hardware
    wi, wf, wo = _widths(hw.dataflow, hw.rows, hw.cols)
    sram = dram = 0
    for li, pods in enumerate(run.pods):
        rec = trace.layers[li]
        if not pods:
            continue
        gm = rec["gemm"]
        max_addr = OFMAP_OFFSET + gm["m"] * gm["n"]
        for p in pods:
            for r in p.runs:
                lines = r.compute_cycles + (1 if run.report.timing == "scalesim" else 0)
                cyc = r.total_cycles + r.stall_cycles + 1
                sram += sum(estimate_bytes(lines, wdt, max_addr, cyc) for wdt in (wi, wf, wo))
                words = r.ifmap_dram_reads + r.filter_dram_reads + r.ofmap_dram_writes
                dram += words * (len(str(max_addr)) + 2) + lines * 12
    return {"sram": int(sram), "dram": int(dram), "total": int(sram + dram)}


def write_address_traces(run: EngineRun, trace, out_dir: str | Path,
                         progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Replay every layer and pod of `run` with logs on and write its traces under `out_dir`."""
    out_dir = Path(out_dir)
    hw = run.hardware
    timing = run.report.timing
    files: list[Path] = []
    n = len(run.pods)
    for li, pods in enumerate(run.pods):
        rec = trace.layers[li]
        if pods:
            gm = rec["gemm"]
            ldir = out_dir / f"layer{li:03d}_{_safe(rec['name'])}"
            for p in pods:
                engines = replay_pod(p, hw, timing, run.memory)
                for gi, (_, eng) in enumerate(engines):
                    sub = ldir / f"pod{p.pod}"
                    if len(engines) > 1:
                        sub = sub / f"group{p.replay['rng'][0] + gi}"
                    files += _write_engine(eng, sub, gm["k"], gm["n"])
                del engines
        if progress is not None:
            progress(li + 1, n, rec["name"])
    return files


__all__ = ["write_address_traces", "estimate_address_trace_bytes", "FILTER_OFFSET", "OFMAP_OFFSET"]
