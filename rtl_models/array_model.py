"""Register-level R x C systolic array, stepped cycle by cycle, for OS, WS and IS.

The third fidelity: slow, small arrays only (up to 16 x 16), but every operand, partial sum
and result lives in an explicit register and moves one PE per clock, and each PE's multiplier
is the chosen 256x256 table (port A = activation, port B = weight, as everywhere). It proves
two things: the values (bit for bit the LUT GEMM of `cosim.axkernels`) and the cycle counts
(per fold, under both timing conventions of `mapping.gemm`).

GEMM view (SCALE-Sim's conventions): C[m, n] = sum_k T[A[m, k], B[k, n]]; per dataflow the
array rows / columns / time cover (Sr, Sc, T) = OS (M, N, K), WS (K, N, M), IS (K, M, N);
folds are visited column fold outer, row fold inner, and partial folds feed bubbles so that
every fold's wavefront spans the whole array (as SCALE-Sim pads its demand matrices).

Registers and timing (cycle c reads the registers as they are at the start of c; all
registers update together at the end of c):

* OS: activations move right (row i holds A[m0+i, :]), weights move down (column j holds
  B[:, n0+j]), fed skewed so that slot k of row i / column j reaches PE(i, j) in cycle
  s_f + k + i + j, where the PE multiplies and accumulates. A PE that has done its last slot
  moves its sum to a hold register (double-buffered accumulator); when the bottom PE of a
  column finishes, the column's hold registers load in parallel into an output shift chain
  that drains down the column (R cycles) while the next fold computes.
* WS / IS: the stationary operand (WS: weights B[k0+i, n0+j]; IS: activations A[m0+j, k0+i])
  sits in PE(i, j); the streaming operand (WS: A[t, k0+i]; IS: B[k0+i, t]) moves right, slot t
  of row i reaching PE(i, j) in cycle s_f + t + i + j; partial sums move down and leave the
  bottom of column j, where the output buffer adds them over row folds.

Timing conventions (`fold_cycles` / `total_cycles` hold them; tests compare with
`mapping.gemm.compute_cycles`):

* ``scalesim``: SCALE-Sim 3.0.0. WS/IS preload the stationary operand by shifting it down the
  active registers (R cycles, bottom row first) before each fold; folds are strictly serial: a
  fold starts when the previous one's last event happened. A fold lasts R + C + T - 2 (OS,
  stream start to last MAC) or 2R + C + T - 2 (WS/IS, preload start to the last partial sum
  leaving the array). SCALE-Sim reports the index of the last cycle: total_cycles - 1.
* ``pipelined``: TPU-like. WS/IS have three stationary register levels: a per-column load
  chain, a shadow register and the active register. Fold f+1's operands shift into the chain
  of column j from cycle s_f + j (R cycles) and latch into the shadows at the end; each PE
  copies shadow -> active when the first slot of fold f+1 reaches it. OS uses the
  double-buffered accumulators above. Stream starts are s_f = L0 + f * max(T, R), L0 = R
  (WS/IS, the exposed first preload) or 0 (OS); the run ends with the last fold's fill and
  drain, s_last + T + R + C - 2. Structural hazards (a shadow overwritten before use, an
  operand not ready, a hold register or output chain overrun) raise `ArrayHazard`, so the
  schedule is proved feasible, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATAFLOWS = ("os", "ws", "is")
CONVENTIONS = ("scalesim", "pipelined")
MAX_DIM = 16


class ArrayHazard(RuntimeError):
    """A register-level conflict: the schedule asked a register to hold two things at once."""


@dataclass(frozen=True)
class FoldRecord:
    """One fold of a run: where it sits in the GEMM and when it ran (cycles from 0)."""

    index: int
    row_fold: int
    col_fold: int
    rows_used: int
    cols_used: int
    t: int  # streamed length T
    start_cycle: int  # first cycle of the fold (preload start for WS/IS scalesim, else stream start)
    stream_start: int  # cycle slot 0 reaches PE(0, 0)
    end_cycle: int  # one past the fold's last compute event (last MAC / last partial sum out)
    cycles: int  # this fold's share of the run under the convention (see module docstring)
    macs: int  # multiplies with two valid operands


@dataclass(frozen=True)
class ArrayRun:
    """Result of a run: the outputs, per-fold records and cycle totals."""

    output: np.ndarray  # (M, N) int64
    folds: tuple[FoldRecord, ...]
    total_cycles: int  # cycles from 0 to the last compute event (SCALE-Sim prints this - 1)
    drain_cycles: int  # further cycles until the last result leaves the array (not in total)
    lead_cycles: int  # cycles before the first stream starts (exposed first preload)
    macs: int
    rows: int
    cols: int
    dataflow: str
    convention: str

    def fold_cycles(self) -> np.ndarray:
        """Per-fold cycle counts (int64); their sum plus lead_cycles is total_cycles."""
        return np.array([f.cycles for f in self.folds], dtype=np.int64)

    def scalesim_cycles(self) -> int:
        """The number SCALE-Sim 3.0.0 reports for this run (index of the last cycle)."""
        return self.total_cycles - 1


def _table(multiplier, signed: bool | None):
    """(int64 table, signed, name) from a Multiplier-like object, (table, signed) or a table."""
    if hasattr(multiplier, "table") and hasattr(multiplier, "signed"):
        t, s, name = multiplier.table, bool(multiplier.signed), str(getattr(multiplier, "name", "table"))
    elif isinstance(multiplier, tuple) and len(multiplier) == 2:
        (t, s), name = multiplier, "table"
    else:
        t, name = multiplier, "table"
        s = bool(np.asarray(t).dtype == np.int16) if signed is None else signed
    t = np.asarray(t)
    if t.shape != (256, 256) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"multiplier {name!r}: table must be a 256x256 integer array, got {t.shape} {t.dtype}")
    return t.astype(np.int64), bool(s), name


def _codes(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.int8:
        x = x.view(np.uint8)
    if x.dtype != np.uint8 or x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array of 8-bit codes (uint8), got {x.dtype} {x.shape}")
    return x.astype(np.int64)


class SystolicArray:
    """An R x C array of PEs with explicit registers, each PE multiplying through `multiplier`."""

    def __init__(self, rows: int, cols: int, dataflow: str, multiplier, convention: str = "scalesim",
                 signed: bool | None = None, interval: int | None = None):
        """interval: pipelined fold issue interval override (default max(T, R)); a shorter one
        than the registers allow raises `ArrayHazard` during the run."""
        if not (1 <= rows <= MAX_DIM and 1 <= cols <= MAX_DIM):
            raise ValueError(f"array size {rows}x{cols}: the register-level model takes 1..{MAX_DIM} per side")
        if dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow {dataflow!r}: expected one of {', '.join(DATAFLOWS)}")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")
        self.rows, self.cols, self.dataflow, self.convention = rows, cols, dataflow, convention
        self.table, self.signed, self.name = _table(multiplier, signed)
        self.interval = interval

    # ------------------------------------------------------------------------------------
    def run_gemm(self, a_codes, b_codes, max_cycles: int = 5_000_000) -> ArrayRun:
        """Run C = sum_k T[A[m,k], B[k,n]] (A: (M, K) activations, B: (K, N) weights) cycle by cycle."""
        A = _codes(a_codes, "a_codes")
        B = _codes(b_codes, "b_codes")
        if A.shape[1] != B.shape[0]:
            raise ValueError(f"GEMM shapes do not match: a_codes {A.shape} @ b_codes {B.shape}")
        if min(A.shape + B.shape) == 0:
            raise ValueError(f"empty GEMM: a_codes {A.shape}, b_codes {B.shape}")
        if self.dataflow == "os":
            return self._run_os(A, B, max_cycles)
        return self._run_stationary(A, B, max_cycles)

    def _fold_list(self, sr: int, sc: int):
        R, C = self.rows, self.cols
        rf, cf = -(-sr // R), -(-sc // C)
        return [(r, c) for c in range(cf) for r in range(rf)]  # column fold outer

    def _finish(self, out, recs, ends, starts, sstarts, macs, t, lead, last_event, last_out):
        """Fold records with the convention's per-fold cycles."""
        folds = []
        F = len(recs)
        for f, (rf, cf, ru, cu) in enumerate(recs):
            if self.convention == "scalesim":
                cyc = ends[f] - starts[f]
            else:
                cyc = (sstarts[f + 1] - sstarts[f]) if f + 1 < F else ends[f] - sstarts[f]
            folds.append(FoldRecord(f, rf, cf, ru, cu, t, starts[f], sstarts[f], ends[f], cyc, macs[f]))
        return ArrayRun(out, tuple(folds), last_event, max(0, last_out - last_event), lead, int(sum(macs)),
                        self.rows, self.cols, self.dataflow, self.convention)

    # ------------------------------------------------------------------------------------
    def _run_os(self, A, B, max_cycles):
        R, C, T = self.rows, self.cols, A.shape[1]
        M, N = A.shape[0], B.shape[1]
        folds = self._fold_list(M, N)
        F = len(folds)
        tab = self.table
        piped = self.convention == "pipelined"
        interval = self.interval or max(T, R)
        ii, jj = np.indices((R, C))
        # registers
        a_v = np.zeros((R, C), np.int64); a_ok = np.zeros((R, C), bool)
        a_slot = np.full((R, C), -1); a_fold = np.full((R, C), -1)
        b_v = np.zeros((R, C), np.int64); b_ok = np.zeros((R, C), bool)
        b_slot = np.full((R, C), -1); b_fold = np.full((R, C), -1)
        acc = np.zeros((R, C), np.int64)
        h_v = np.zeros((R, C), np.int64); h_full = np.zeros((R, C), bool); h_ok = np.zeros((R, C), bool)
        h_m = np.zeros((R, C), np.int64); h_n = np.zeros((R, C), np.int64)
        o_v = np.zeros((R, C), np.int64); o_busy = np.zeros((R, C), bool); o_ok = np.zeros((R, C), bool)
        o_m = np.zeros((R, C), np.int64); o_n = np.zeros((R, C), np.int64)
        out = np.zeros((M, N), np.int64)
        written = np.zeros((M, N), bool)
        sstart = [0] + [None] * (F - 1)
        if piped:
            sstart = [f * interval for f in range(F)]
        ends = [None] * F
        macs = [0] * F

        def feed(c):
            """Values entering column 0 (rows) and row 0 (columns) in cycle c."""
            av = np.zeros(R, np.int64); aok = np.zeros(R, bool); asl = np.full(R, -1); afo = np.full(R, -1)
            bv = np.zeros(C, np.int64); bok = np.zeros(C, bool); bsl = np.full(C, -1); bfo = np.full(C, -1)
            for f in range(F):
                s = sstart[f]
                if s is None or c < s or c >= s + T + max(R, C):
                    continue
                rf, cf = folds[f]
                m0, n0 = rf * R, cf * C
                for i in range(R):
                    k = c - s - i
                    if 0 <= k < T:
                        asl[i], afo[i] = k, f
                        if m0 + i < M:
                            av[i], aok[i] = A[m0 + i, k], True
                for j in range(C):
                    k = c - s - j
                    if 0 <= k < T:
                        bsl[j], bfo[j] = k, f
                        if n0 + j < N:
                            bv[j], bok[j] = B[k, n0 + j], True
            return av, aok, asl, afo, bv, bok, bsl, bfo

        av, aok, asl, afo, bv, bok, bsl, bfo = feed(0)
        a_v[:, 0], a_ok[:, 0], a_slot[:, 0], a_fold[:, 0] = av, aok, asl, afo
        b_v[0], b_ok[0], b_slot[0], b_fold[0] = bv, bok, bsl, bfo
        last_out = 0
        c = 0
        while True:
            if c > max_cycles:
                raise RuntimeError(f"array model exceeded {max_cycles} cycles")
            live = a_slot >= 0
            if np.any(live != (b_slot >= 0)) or np.any((a_slot != b_slot) & live) or np.any((a_fold != b_fold) & live):
                raise ArrayHazard(f"cycle {c}: activation and weight slots misaligned")
            mac = live & a_ok & b_ok
            acc = acc + np.where(mac, tab[a_v, b_v], 0)
            for f in np.unique(a_fold[mac]):
                macs[f] += int(np.count_nonzero(mac & (a_fold == f)))
            done = live & (a_slot == T - 1)
            if np.any(done & h_full):
                raise ArrayHazard(f"cycle {c}: hold register overwritten before it drained")
            # finished sums move to the hold registers (double-buffered accumulators)
            if np.any(done):
                fo = a_fold
                rf_arr = np.array([folds[f][0] if f >= 0 else 0 for f in fo.ravel()]).reshape(R, C)
                cf_arr = np.array([folds[f][1] if f >= 0 else 0 for f in fo.ravel()]).reshape(R, C)
                mm, nn = rf_arr * R + ii, cf_arr * C + jj
                h_v = np.where(done, acc, h_v)
                h_ok = np.where(done, (mm < M) & (nn < N), h_ok)
                h_m = np.where(done, mm, h_m)
                h_n = np.where(done, nn, h_n)
                h_full = h_full | done
                acc = np.where(done, 0, acc)
                if done[R - 1, C - 1]:
                    f = int(a_fold[R - 1, C - 1])
                    ends[f] = c + 1
                    if not piped and f + 1 < F:
                        sstart[f + 1] = c + 1
            # output chains: the bottom register leaves, the rest shift down, a finished
            # column loads its hold registers in parallel
            leave = o_busy[R - 1] & o_ok[R - 1]
            for j in np.flatnonzero(leave):
                m, n = o_m[R - 1, j], o_n[R - 1, j]
                if written[m, n]:
                    raise ArrayHazard(f"cycle {c}: result ({m}, {n}) produced twice")
                out[m, n], written[m, n] = o_v[R - 1, j], True
                last_out = c + 1
            load = done[R - 1] & h_full[R - 1]
            for reg in (o_v, o_busy, o_ok, o_m, o_n):
                reg[1:] = reg[:-1].copy()
                reg[0] = 0
            for j in np.flatnonzero(load):
                if np.any(o_busy[1:, j]):
                    raise ArrayHazard(f"cycle {c}: output chain of column {j} still draining")
                o_v[:, j], o_ok[:, j], o_m[:, j], o_n[:, j] = h_v[:, j], h_ok[:, j], h_m[:, j], h_n[:, j]
                o_busy[:, j] = True
                h_full[:, j] = False
            # operand registers shift; feeders drive the edges for cycle c + 1
            for reg in (a_v, a_ok, a_slot, a_fold):
                reg[:, 1:] = reg[:, :-1].copy()
            for reg in (b_v, b_ok, b_slot, b_fold):
                reg[1:] = reg[:-1].copy()
            av, aok, asl, afo, bv, bok, bsl, bfo = feed(c + 1)
            a_v[:, 0], a_ok[:, 0], a_slot[:, 0], a_fold[:, 0] = av, aok, asl, afo
            b_v[0], b_ok[0], b_slot[0], b_fold[0] = bv, bok, bsl, bfo
            c += 1
            if all(e is not None for e in ends) and not o_busy.any() and not h_full.any():
                break
        if not written.all():
            raise ArrayHazard("some results never left the array")
        recs = [(rf, cf, min(R, M - rf * R), min(C, N - cf * C)) for rf, cf in folds]
        return self._finish(out, recs, ends, list(sstart), list(sstart), macs, T, 0, ends[-1], last_out)

    # ------------------------------------------------------------------------------------
    def _run_stationary(self, A, B, max_cycles):
        R, C = self.rows, self.cols
        M, K = A.shape
        N = B.shape[1]
        ws = self.dataflow == "ws"
        sr, sc, T = (K, N, M) if ws else (K, M, N)
        folds = self._fold_list(sr, sc)
        F = len(folds)
        tab = self.table
        piped = self.convention == "pipelined"
        interval = self.interval or max(T, R)

        def stat(f):
            """Stationary tile of fold f: (values, ok) as R x C."""
            rf, cf = folds[f]
            k0, c0 = rf * R, cf * C
            v = np.zeros((R, C), np.int64)
            ok = np.zeros((R, C), bool)
            kr = min(R, K - k0)
            cc = min(C, sc - c0)
            if ws:
                v[:kr, :cc] = B[k0:k0 + kr, c0:c0 + cc]
            else:
                v[:kr, :cc] = A[c0:c0 + cc, k0:k0 + kr].T
            ok[:kr, :cc] = True
            return v, ok

        # registers: stationary (active, shadow, load chain), stream (moving right), psums (down)
        w_v = np.zeros((R, C), np.int64); w_ok = np.zeros((R, C), bool); w_fold = np.full((R, C), -1)
        sh_v = np.zeros((R, C), np.int64); sh_ok = np.zeros((R, C), bool); sh_fold = np.full((R, C), -1)
        sh_used = np.ones((R, C), bool)
        ch_v = np.zeros((R, C), np.int64); ch_ok = np.zeros((R, C), bool); ch_fold = np.full((R, C), -1)
        s_v = np.zeros((R, C), np.int64); s_ok = np.zeros((R, C), bool)
        s_slot = np.full((R, C), -1); s_fold = np.full((R, C), -1)
        p_v = np.zeros((R, C), np.int64); p_slot = np.full((R, C), -1); p_fold = np.full((R, C), -1)
        out = np.zeros((M, N), np.int64)
        hits = np.zeros((M, N), np.int64)
        if piped:
            sstart = [R + f * interval for f in range(F)]
            lstart = [0] + [None] * (F - 1)
        else:
            sstart = [R] + [None] * (F - 1)
            lstart = [0] + [None] * (F - 1)
        ends = [None] * F
        macs = [0] * F
        stiles = {}

        def tile(f):
            if f not in stiles:
                stiles[f] = stat(f)
            return stiles[f]

        def feed(c):
            v = np.zeros(R, np.int64); ok = np.zeros(R, bool); sl = np.full(R, -1); fo = np.full(R, -1)
            for f in range(F):
                s = sstart[f]
                if s is None or c < s or c >= s + T + R:
                    continue
                k0 = folds[f][0] * R
                for i in range(R):
                    t = c - s - i
                    if 0 <= t < T:
                        sl[i], fo[i] = t, f
                        if k0 + i < K:
                            v[i], ok[i] = (A[t, k0 + i] if ws else B[k0 + i, t]), True
            return v, ok, sl, fo

        def load_events(c):
            """(fold, column, step u) of stationary load shifts at the end of cycle c."""
            ev = []
            for f in range(F):
                if piped:
                    base = 0 if f == 0 else sstart[f - 1]
                    for j in range(C):
                        u = c - base - (0 if f == 0 else j)
                        if 0 <= u < R:
                            ev.append((f, j, u))
                elif lstart[f] is not None and 0 <= c - lstart[f] < R:
                    ev.extend((f, j, c - lstart[f]) for j in range(C))
            return ev

        s_v[:, 0], s_ok[:, 0], s_slot[:, 0], s_fold[:, 0] = feed(0)
        last_out = 0
        c = 0
        while True:
            if c > max_cycles:
                raise RuntimeError(f"array model exceeded {max_cycles} cycles")
            live = s_slot >= 0
            # pipelined: the first slot of a fold copies shadow -> active as it passes
            if piped:
                first = live & (s_slot == 0)
                bad = first & ((sh_fold != s_fold) | sh_used)
                if np.any(bad):
                    raise ArrayHazard(f"cycle {c}: stationary operand of fold {int(s_fold[bad][0])} not ready")
                w_v = np.where(first, sh_v, w_v)
                w_ok = np.where(first, sh_ok, w_ok)
                w_fold = np.where(first, sh_fold, w_fold)
                sh_used = sh_used | first
            if np.any(live & (w_fold != s_fold)):
                raise ArrayHazard(f"cycle {c}: a PE holds another fold's stationary operand")
            # partial sums: row 0 starts from zero, row i adds to what row i-1 produced last cycle
            pin_v = np.vstack([np.zeros((1, C), np.int64), p_v[:-1]])
            pin_slot = np.vstack([s_slot[:1], p_slot[:-1]])
            pin_fold = np.vstack([s_fold[:1], p_fold[:-1]])
            if np.any(live & ((pin_slot != s_slot) | (pin_fold != s_fold))):
                raise ArrayHazard(f"cycle {c}: partial sum and operand slots misaligned")
            mac = live & s_ok & w_ok
            prod = np.where(mac, tab[s_v, w_v] if ws else tab[w_v, s_v], 0)
            for f in np.unique(s_fold[mac]):
                macs[f] += int(np.count_nonzero(mac & (s_fold == f)))
            new_v = np.where(live, pin_v + prod, 0)
            # the bottom row's partial sums leave the array into the output buffer
            for j in np.flatnonzero(live[R - 1]):
                f, t = int(s_fold[R - 1, j]), int(s_slot[R - 1, j])
                cidx = folds[f][1] * C + j
                if cidx < sc:
                    m, n = (t, cidx) if ws else (cidx, t)
                    out[m, n] += new_v[R - 1, j]
                    hits[m, n] += 1
                    last_out = c + 1
                if j == C - 1 and t == T - 1:
                    ends[f] = c + 1
                    if not piped and f + 1 < F:
                        lstart[f + 1] = c + 1
                        sstart[f + 1] = c + 1 + R
            # stationary loads (end of cycle): shift down the load chain (scalesim: the
            # active registers themselves), bottom row's operand first
            for f, j, u in load_events(c):
                v, ok = tile(f)
                row = R - 1 - u
                if piped:
                    ch_v[1:, j], ch_ok[1:, j], ch_fold[1:, j] = ch_v[:-1, j].copy(), ch_ok[:-1, j].copy(), ch_fold[:-1, j].copy()
                    ch_v[0, j], ch_ok[0, j], ch_fold[0, j] = v[row, j], ok[row, j], f
                    if u == R - 1:  # chain full: latch into the shadows
                        if not np.all(sh_used[:, j]):
                            raise ArrayHazard(f"cycle {c}: shadow registers of column {j} overwritten before use")
                        sh_v[:, j], sh_ok[:, j], sh_fold[:, j] = ch_v[:, j], ch_ok[:, j], ch_fold[:, j]
                        sh_used[:, j] = False
                else:
                    if np.any(live[:, j]):
                        raise ArrayHazard(f"cycle {c}: preload of column {j} while it still computes")
                    w_v[1:, j], w_ok[1:, j], w_fold[1:, j] = w_v[:-1, j].copy(), w_ok[:-1, j].copy(), w_fold[:-1, j].copy()
                    w_v[0, j], w_ok[0, j], w_fold[0, j] = v[row, j], ok[row, j], f
            p_v, p_slot, p_fold = new_v, np.where(live, s_slot, -1), np.where(live, s_fold, -1)
            for reg in (s_v, s_ok, s_slot, s_fold):
                reg[:, 1:] = reg[:, :-1].copy()
            s_v[:, 0], s_ok[:, 0], s_slot[:, 0], s_fold[:, 0] = feed(c + 1)
            c += 1
            if all(e is not None for e in ends):
                break
        want = -(-K // R)  # each output gets one partial sum per row fold
        if not np.all(hits == want):
            raise ArrayHazard(f"partial sums per output should be {want}, got {np.unique(hits).tolist()}")
        recs = [(rf, cf, min(R, K - rf * R), min(C, sc - cf * C)) for rf, cf in folds]
        starts = list(lstart) if not piped else list(sstart)
        if piped:
            starts[0] = 0
        return self._finish(out, recs, ends, starts, list(sstart), macs, T, sstart[0] if piped else 0,
                            ends[-1], last_out)


def run_gemm(a_codes, b_codes, multiplier, rows: int, cols: int, dataflow: str,
             convention: str = "scalesim") -> ArrayRun:
    """One-call form of `SystolicArray(rows, cols, dataflow, multiplier, convention).run_gemm`."""
    return SystolicArray(rows, cols, dataflow, multiplier, convention).run_gemm(a_codes, b_codes)
