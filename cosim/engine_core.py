"""Single-pod, single-layer cycle-level engine that reproduces SCALE-Sim 3.0.0 exactly.

This is the Numba core of the cycle-level engine. It runs one layer on one R x C systolic
array and returns SCALE-Sim 3.0.0's numbers (COMPUTE_REPORT, BANDWIDTH_REPORT and
DETAILED_ACCESS_REPORT) to the last cycle and access, without building SCALE-Sim's demand
matrices: every demanded address is generated on the fly from closed forms, fold by fold and
line by line. Memory is bounded by the layer's operands, not by its cycle count: CALC mode keeps
one int32 stamp per ifmap and filter word; USER mode keeps, for each address, the (sorted)
read-buffer lines that hold it (one int32 per prefetch-matrix entry, built once per layer, so
that a hit test is a binary search and a miss costs O(log) per window slide instead of
re-reading the prefetched words); the ofmap keeps a queue of undrained rows (bounded by its
SRAM); utilization windows grow with the trace asked for.

What follows is SCALE-Sim 3.0.0's model exactly as shipped (read from its source,
`scalesim/compute/*`, `scalesim/memory/*`, `single_layer_sim.py`), so that a reader need not
open it. "Line" means one row of a SCALE-Sim demand matrix: one array cycle before stalls.

Workload (topology_utils.py, operand_matrix.py)
-----------------------------------------------
A layer is (H, W, Fh, Fw, C, N, s): IFMAP H x W x C, N filters Fh x Fw x C, one stride s for
both axes, no padding. E_h = ceil((H - Fh + s)/s), E_w likewise; M = E_h*E_w, K = Fh*Fw*C.
A GEMM (M, N, K) is the conv (H, W, Fh, Fw, C, N, s) = (M, K, 1, K, 1, N, 1). A layer whose name
contains ``DP`` is split by SCALE-Sim into C layers of one channel each (report rows).
(Beyond SCALE-Sim, `ConvShape.batch` = B images stack in M, image b's ifmap at b*H*W*C.)
Operand matrices (addresses; offsets 0 / 10,000,000 / 20,000,000 are irrelevant here):
* ifmap[m, k], m = (oh, ow) row-major over E_h x E_w, k = (fh, fw, c) row-major over
  Fh x Fw x C: ((oh*s+fh)*W + ow*s+fw)*C + c, or -1 (no access) when oh*s+fh >= H or
  ow*s+fw >= W (happens only when (H - Fh) % s != 0);
* filter[k, n] = n*K + k;  ofmap[m, n] = m*N + n.
Per dataflow (Sr, Sc, T) = OS (M, N, K), WS (K, N, M), IS (K, M, N); row folds
ceil(Sr/R), column folds ceil(Sc/C), visited column fold outer, row fold inner. In fold
(fc, fr) a = min(R, Sr - fr*R) rows and b = min(C, Sc - fc*C) columns are used.

Compute schedule (systolic_compute_{os,ws,is}.py): each fold is P consecutive lines
--------------------------------------------------------------------------------------
OS, P = T + R + C - 2. Line tau of the fold demands, column by column in ascending order,
  ifmap  column r < a:  ifmap[fr*R + r, tau - r]               for 0 <= tau - r < T
  filter column c < b:  filter[tau - c, fc*C + c]              for 0 <= tau - c < T
  ofmap  column c < b:  ofmap[fr*R + R-1-rho, fc*C + c], rho = tau - c - (T-1) in [0, R),
                        when R-1-rho < a: outputs drain from the bottom edge, skewed.
WS, P = 2R + C + T - 2. Lines 0..R-1 load the stationary filter bottom row first:
  filter line rho < R: filter[fr*R + R-1-rho, fc*C + c] for c < b, when R-1-rho < a
  ifmap  column r < a:  ifmap[tau - R - r, fr*R + r]           for 0 <= tau - R - r < T
  ofmap  column c < b:  t = tau - c - (2R-1) in [0, T)  (partial sums, every row fold)
IS, P = 2R + C + T - 2, the same with the roles of the operands exchanged:
  ifmap  line rho < R:  ifmap[fc*C + c, fr*R + R-1-rho] for c < b, when R-1-rho < a
  filter column r < a:  filter[fr*R + r, tau - R - r]          for 0 <= tau - R - r < T
  ofmap  column c < b:  t = tau - c - (2R-1) in [0, T)
Without stalls a layer of F folds ends at line F*P - 1 ("Total Cycles"). Clipped ifmap
entries (-1) are skipped by the memory system but counted by the SRAM counters below.
SRAM counts are SCALE-Sim's counters: OS ifmap cf*M*K, filter rf*K*N, ofmap M*N + F*(R+C)
(it adds R + C per fold, a quirk of its counter); WS ifmap cf*M*K, filter K*N, ofmap rf*M*N;
IS ifmap K*M, filter cf*K*N, ofmap rf*M*N. Mapping efficiency is the mean over folds of
a*b/(R*C); compute utilization the mean of a*b*T/(R*C*Q) with Q = T+R+C-2 (OS) or
2R+2C+T-3 (WS, IS); overall utilization M*N*K/(Total Cycles * R*C). All in %, averaged in fold
order exactly as SCALE-Sim does, so the floats agree to the last bit.

Memory system (double_buffered_scratchpad_mem.py) and the stall count
-----------------------------------------------------------------------
Word size is 1 byte in SCALE-Sim (hard-coded), so an SRAM of S KiB holds E = 1024*S words.
For line i, with S_i the stall cycles accumulated before it, the request cycle is
c = i + S_i. The ifmap buffer, the filter buffer and the ofmap buffer are each served at c and
return an offset (ifmap/filter: service cycle - c, 1 on a hit; ofmap: 0 without a stall).
The line adds  max(off_ifmap - 1, off_filter - 1, off_ofmap)  stall cycles. Total Cycles is the
largest ofmap service cycle c + off_ofmap over all lines (not Lines - 1 + stalls: a stall on
the last line only counts if it is an ofmap stall).

Read buffers, USER mode (read_buffer.py): finite DRAM bandwidth B words/cycle per operand.
* The prefetch matrix (below) is cut, in its order and skipping -1, into "lines" of
  e = ceil(E/100) entries (sets: duplicates inside one count once); the last line holds the
  rest and may be empty. n = V//e + 1 lines for V valid entries.
* The active half holds A = min(ceil(ceil(E/2)/e), n) lines, the prefetch half
  P = min(ceil(floor(E/2)/e), n - A). The active window is lines [s, s+A) modulo n, s = 0 first.
* Before cycle 0 the first ceil(ceil(E/2)/B) rows of B entries of the prefetch matrix
  (at most all of them) are read: DRAM reads += rows*B (padding included), DRAM start cycle
  = -rows, and the prefetch clock p = -1.
* A demanded address that is not in the active window is a miss; then, until it is found:
  s += P (the window slides by P lines; P new lines enter), p += ceil(floor(E/2)/B) + 1,
  DRAM reads += ceil(floor(E/2)/B)*B, and with d = p - (c + off):
  ``scalesim-3.0.0``: off += d, and again off += d if d > 0 -- SCALE-Sim adds the stall twice,
  and also lets off shrink when the prefetch finished early;
  ``ideal-fixed``: off += d only if d > 0 (the data is there at max(request, prefetch end)).
  Misses are served in column order inside the line, so later misses see the earlier offset.
  DRAM stop cycle = the final p. Note the prefetch clock runs back to back from cycle -1: it
  does not depend on when the miss happens, only on how many prefetches there were.
* Prefetch matrices (fold-stacked operand slices, padded with -1 to the array width):
  OS ifmap  (rf*K x R) [fr*K + t, r] = ifmap[fr*R + r, t], read along anti-diagonals;
  OS filter (cf*K x C) [fc*K + t, c] = filter[t, fc*C + c], anti-diagonals;
  WS ifmap  (rf*M x R) [fr*M + t, r] = ifmap[t, fr*R + r], anti-diagonals;
  WS filter (cf*K x C) [fc*K + k, c] = filter[k, fc*C + c], row-major;
  IS ifmap  (cf*K x C) [fc*K + k, c] = ifmap[fc*C + c, k], row-major;
  IS filter (rf*N x R) [fr*N + t, r] = filter[fr*R + r, t], anti-diagonals.
  Anti-diagonal order: diagonals d = 0, 1, ...; on each, row from min(d, rows-1) down to
  max(0, d - cols + 1), column d - row.

Read buffers, CALC mode (read_buffer_estimate_bw.py): never stall (off = 1); they only count
DRAM traffic. With e' = floor(E/100) words per set and 50 sets per half: every demanded
address not yet seen in the current epoch is a DRAM read (it joins the open set); when 50 sets
have been filled the epoch ends at that line's cycle c_k (an "event") and a new empty epoch
begins. DRAM reads = all such reads. DRAM start = first - ceil(50*e'/10) when there was an
event (first = cycle of the first line demanding this operand), else
-ceil(ceil(reads/e')*e'/10); DRAM stop = c_last_event + 1, or -1 without an event.

Ofmap write buffer (write_buffer.py), both modes; drain bandwidth B_o = ``Bandwidth`` (USER)
or C (CALC): active half ceil(E/2) words, drain half D = E - ceil(E/2). Each written element
(order irrelevant; only counts matter) is appended to the current trace row of B_o entries
(a full row is queued) and free -= 1. Then: if the current cycle x < drain_end: when free <= 0,
the array waits: off += drain_end - x, x = drain_end. Otherwise, if free < ceil(E/2): the open
row is queued even if partial ("force flush"), and a drain starts at x: it takes the next
ceil(D/B_o) queued rows (or what is there), counts rows*B_o minus the padding of its last row
only (padding inside is counted: another SCALE-Sim quirk), credits that to free and to the
DRAM writes, and ends at drain_end = x + rows - 1. After the last line the open row is flushed
and the queue drained back to back from the last line's ofmap service cycle. DRAM ofmap
start/stop = first drain start / last drain end. "Total Cycles (incl. prefetch)" = ofmap DRAM
stop - min(ifmap DRAM start, filter DRAM start). SRAM start/stop cycles are the service
cycles of the first/last line demanding that operand.

Beyond one SCALE-Sim layer: tiles, groups, pipelining, rate changes (cosim.engine)
------------------------------------------------------------------------------------
* Tiles: ``tile=(m0, m1, n0, n1, k0, k1)`` runs one box of the layer's GEMM (a pod's share):
  the folds of that sub-GEMM in SCALE-Sim's order, with the layer's own ifmap addresses (so
  window overlaps and clipping are the layer's), numbered from the tile's lowest address (a
  uniform shift: hits and misses are unchanged; `PodEngine.ifmap_base` restores them).
* Groups: ``groups=G`` repeats the tile G times in one fold stream (group, then column fold,
  then row fold) with disjoint addresses; the groups' prefetch matrices follow one another.
  (SCALE-Sim runs a grouped layer as G separate layers; `cosim.engine` does the same in the
  scalesim convention and uses one stream only in the pipelined one.)
* Timing: fold f's line tau is timeline line f*delta + tau with delta = P (``scalesim``:
  serial folds) or max(T, R) (``pipelined``, `mapping.gemm`: the next fold's preload / fill
  overlaps this fold's stream / drain). A line then carries the demands of every fold in
  flight, older folds first; the layer has (F-1)*delta + P lines. The pipelined convention
  counts cycles (lines) where SCALE-Sim reports the last line's index, drops SCALE-Sim's
  +(R+C)-per-fold OS counter quirk, and with ``psum_on_chip`` (WS/IS) writes only the last
  row fold's outputs.
* Rate changes: `PodEngine.set_bandwidth` changes the DRAM rates between steps: later
  prefetches take ceil(half/B) + 1 cycles at the new B; ofmap rows queued from then on hold B
  words; a drain counts each row at the size it was queued with (with a constant rate that is
  SCALE-Sim's count, padding quirk included). `step(cycle_limit)` advances a pod to a cycle,
  so a driver can step pods in lockstep and re-divide shared bandwidth between steps.
* A USER read buffer whose lines all fit in its active half always hits (SCALE-Sim's window
  then covers every line): its demands are counted, never looked up.
* ``trace=True`` logs every line (cycle, offsets, prefetch clocks) and every drain, from
  which `cosim.address_traces` regenerates SCALE-Sim's SRAM traces exactly.

Windowed utilization: each line is one compute cycle placed after its stall cycles; a cycle
is busy when at least one PE does a MAC (PE (r, c) does MAC t at fold line t + r + c for OS,
R + t + r + c for WS/IS), stalled during stall cycles, idle otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

DATAFLOWS = ("os", "ws", "is")
BANDWIDTH_MODES = ("calc", "user")
MEMORY_MODELS = ("scalesim-3.0.0", "ideal-fixed")
TIMINGS = ("scalesim", "pipelined")

# SCALE-Sim's CALC-mode constants (read_buffer_estimate_bw.py / single_layer_sim.py).
CALC_READ_BW = 10  # words/cycle used to time the first CALC prefetch
SETS_PER_HALF = 50  # int(0.5 * 100) sets in each half of a CALC read buffer

# ---------------------------------------------------------------------------------------------
# Parameter vector layout (int64). Globals are compile-time constants for Numba.
# ---------------------------------------------------------------------------------------------
P_DF, P_R, P_C, P_H, P_W, P_N, P_M, P_K = range(8)
P_SR, P_SC, P_T, P_ROWF, P_COLF, P_FOLDLEN, P_LINES, P_USER, P_IDEAL, P_WIN = range(8, 18)
P_TAB_M, P_TAB_K = 18, 19  # offsets of the per-m and per-k address tables in `tab`
# per read operand o in (0 ifmap, 1 filter): base P_RD + o*P_RD_STRIDE
P_RD = 20
(RD_A, RD_PL, RD_NL, RD_EPS, RD_PFR, RD_PFC, RD_PFK, RD_CODE, RD_BW, RD_LP, RD_ITEMS,
 RD_BASE, RD_PFSZ, RD_ALLHIT) = range(14)
P_RD_STRIDE = 14
P_WR = P_RD + 2 * P_RD_STRIDE
WR_ACTIVE, WR_BW, WR_LD, WR_DRAIN = range(4)
P_G = P_WR + 4  # groups: the tile repeated with distinct addresses (one fold stream)
P_NIFG = P_G + 1  # ifmap address stride between groups (words)
P_NFG = P_G + 2  # filter address stride between groups (words)
P_DELTA = P_G + 3  # cycles between fold starts: the fold length (scalesim) or max(T, R)
P_FOLDS = P_G + 4  # folds of all groups
P_WOFF = P_G + 5  # global cycle of this engine's cycle 0 (window alignment, fold records)
P_PSACC = P_G + 6  # 1: partial sums stay on chip, only the last row fold writes outputs
P_REC = P_G + 7  # 1: record each fold's start / end / stall cycles
P_NOCLIP = P_G + 8  # 1: no ifmap window is clipped (every im2col entry is a real address)
P_TRACE = P_G + 9  # 1: log every line and every drain (address traces)
P_SIZE = P_G + 10
# line log columns (trace mode): request cycle, the three offsets, ofmap elements written, and
# after the line each read buffer's prefetch count and prefetch clock, then its DRAM rate
LOG_COLS = 11
ROW_MASK = (1 << 32) - 1  # ofmap queue entries: (nominal row words << 32) | words in the row

# State vector layout (int64).
S_LINE, S_STALL, S_TOTAL, S_PEND, S_PEND_C, S_PEND_SL, S_PEND_MACS, S_LASTOUT, S_ERR = range(9)
S_RD = 9
(RS_LAST, RS_NPF, RS_DRAM, RS_WIN, RS_SRAM0, RS_SRAM1, RS_EPOCH, RS_INSET, RS_SETS, RS_FIRST,
 RS_NEV, RS_LASTEV, RS_BAD) = range(13)
S_RD_STRIDE = 13
S_WR = S_RD + 2 * S_RD_STRIDE
(WS_FREE, WS_DEND, WS_LIDX, WS_QH, WS_QN, WS_DRAM, WS_D0, WS_D1, WS_NDR, WS_SRAM0,
 WS_SRAM1) = range(11)
S_SIZE = S_WR + 11

# step() status codes
ST_DONE, ST_LIMIT, ST_GROW_QUEUE, ST_GROW_WIN, ST_ERROR, ST_GROW_LOG = 0, 1, 2, 3, 4, 5
# error codes left in st[S_ERR] by the Numba code (exceptions there cost compile time)
ERR_NO_PREFETCH, ERR_NEVER_FETCHED, ERR_EMPTY_DRAIN = 1, 2, 3
_ERR_TEXT = {
    ERR_NO_PREFETCH: "a read buffer without prefetch lines missed an address",
    ERR_NEVER_FETCHED: "an address never enters its read buffer (prefetch order bug)",
    ERR_EMPTY_DRAIN: "an ofmap drain found no queued rows (SCALE-Sim 3.0.0 would fail)",
}

NO_CYCLE = np.iinfo(np.int64).min  # "never happened" marker for start/stop cycles


class EngineError(ValueError):
    """A layer or configuration the engine cannot run (names the field and the value)."""


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvShape:
    """A layer as SCALE-Sim sees it: no padding, one stride, output ceil((H - Fh + s)/s)."""

    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filters: int
    stride: int = 1
    batch: int = 1  # images one after another in M (addresses: image b at b*H*W*C)

    def __post_init__(self):
        for name in ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filters",
                     "stride", "batch"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise EngineError(f"ConvShape.{name} = {v!r}: expected a positive integer")
        if self.filter_h > self.ifmap_h:
            raise EngineError(f"ConvShape.filter_h = {self.filter_h} exceeds ifmap_h = "
                              f"{self.ifmap_h} (SCALE-Sim rejects it)")
        if self.filter_w > self.ifmap_w:
            raise EngineError(f"ConvShape.filter_w = {self.filter_w} exceeds ifmap_w = "
                              f"{self.ifmap_w} (SCALE-Sim rejects it)")

    @classmethod
    def gemm(cls, m: int, n: int, k: int) -> "ConvShape":
        """SCALE-Sim's conv form of a GEMM (M x K) @ (K x N)."""
        return cls(ifmap_h=m, ifmap_w=k, filter_h=1, filter_w=k, channels=1, num_filters=n,
                   stride=1)

    @classmethod
    def from_operand_dims(cls, dataflow: str, sr: int, sc: int, t: int) -> "ConvShape":
        """The GEMM whose (Sr, Sc, T) under `dataflow` is given (addresses of a plain GEMM)."""
        if dataflow == "os":
            m, n, k = sr, sc, t
        elif dataflow == "ws":
            k, n, m = sr, sc, t
        elif dataflow == "is":
            k, m, n = sr, sc, t
        else:
            raise EngineError(f"dataflow = {dataflow!r}: expected one of {DATAFLOWS}")
        return cls.gemm(m, n, k)

    @property
    def ofmap_h(self) -> int:
        """Output rows, SCALE-Sim's ceil((H - Fh + s)/s)."""
        return -(-(self.ifmap_h - self.filter_h + self.stride) // self.stride)

    @property
    def ofmap_w(self) -> int:
        """Output columns, SCALE-Sim's ceil((W - Fw + s)/s)."""
        return -(-(self.ifmap_w - self.filter_w + self.stride) // self.stride)

    @property
    def m(self) -> int:
        """Output pixels per filter over the batch (GEMM M)."""
        return self.batch * self.ofmap_h * self.ofmap_w

    @property
    def ifmap_words(self) -> int:
        """Words of the (padded) ifmap over the batch: the ifmap address range."""
        return self.batch * self.ifmap_h * self.ifmap_w * self.channels

    @property
    def k(self) -> int:
        """Window size Fh*Fw*C (GEMM K)."""
        return self.filter_h * self.filter_w * self.channels

    @property
    def n(self) -> int:
        """Filters (GEMM N)."""
        return self.num_filters

    @property
    def macs(self) -> int:
        """MACs of the layer, M*N*K."""
        return self.m * self.n * self.k

    def operand_dims(self, dataflow: str) -> tuple[int, int, int]:
        """(Sr, Sc, T) under `dataflow`."""
        m, n, k = self.m, self.n, self.k
        return {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[_check_dataflow(dataflow)]


def _check_dataflow(df: str) -> str:
    if df not in DATAFLOWS:
        raise EngineError(f"dataflow = {df!r}: expected one of {', '.join(DATAFLOWS)}")
    return df


@dataclass(frozen=True)
class PodSpec:
    """One pod (systolic array + three double-buffered SRAMs) and its memory interface.

    SRAM sizes are in words; `from_kib` converts KiB with `word_size_bytes`. Bandwidths are
    words/cycle and only used in ``user`` mode (SCALE-Sim's USER: ifmap/filter DRAM rates are
    its `[layout] IfmapSRAMBankBandwidth` / `FilterSRAMBankBandwidth`, the ofmap drain rate its
    `Bandwidth`); ``calc`` mode uses SCALE-Sim's fixed 10 words/cycle and C words/cycle.
    """

    dataflow: str
    rows: int
    cols: int
    ifmap_sram_words: int
    filter_sram_words: int
    ofmap_sram_words: int
    bandwidth_mode: str = "calc"
    ifmap_dram_bw_words: int = 10
    filter_dram_bw_words: int = 10
    ofmap_dram_bw_words: int = 10
    memory_model: str = "scalesim-3.0.0"
    timing: str = "scalesim"
    word_size_bytes: int = 1

    def __post_init__(self):
        _check_dataflow(self.dataflow)
        for name in ("rows", "cols", "ifmap_dram_bw_words", "filter_dram_bw_words",
                     "ofmap_dram_bw_words", "word_size_bytes"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise EngineError(f"PodSpec.{name} = {v!r}: expected a positive integer")
        for name in ("ifmap_sram_words", "filter_sram_words", "ofmap_sram_words"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 100:
                raise EngineError(f"PodSpec.{name} = {v!r}: expected an integer >= 100 words "
                                  "(SCALE-Sim splits each SRAM into 100 sets)")
        if self.bandwidth_mode not in BANDWIDTH_MODES:
            raise EngineError(f"PodSpec.bandwidth_mode = {self.bandwidth_mode!r}: expected one "
                              f"of {BANDWIDTH_MODES}")
        if self.memory_model not in MEMORY_MODELS:
            raise EngineError(f"PodSpec.memory_model = {self.memory_model!r}: expected one of "
                              f"{MEMORY_MODELS}")
        if self.timing not in TIMINGS:
            raise EngineError(f"PodSpec.timing = {self.timing!r}: expected one of {TIMINGS}")

    @classmethod
    def from_kib(cls, dataflow: str, rows: int, cols: int, ifmap_kib: float, filter_kib: float,
                 ofmap_kib: float, word_size_bytes: int = 1, **kw) -> "PodSpec":
        """A PodSpec with SRAM sizes in KiB (words = floor(KiB*1024 / word size))."""
        def words(kib):
            return int(math.floor(kib * 1024 / word_size_bytes))
        return cls(dataflow=dataflow, rows=rows, cols=cols, ifmap_sram_words=words(ifmap_kib),
                   filter_sram_words=words(filter_kib), ofmap_sram_words=words(ofmap_kib),
                   word_size_bytes=word_size_bytes, **kw)


@dataclass(frozen=True)
class UtilizationWindows:
    """Per-window busy / stalled / idle cycles and MACs of one pod (window of N cycles)."""

    window_cycles: int
    busy_cycles: np.ndarray
    stall_cycles: np.ndarray
    idle_cycles: np.ndarray
    macs: np.ndarray

    @property
    def window_lengths(self) -> np.ndarray:
        """Cycles in each window (the last one may be short)."""
        return self.busy_cycles + self.stall_cycles + self.idle_cycles

    @property
    def busy_fraction(self) -> np.ndarray:
        """Share of each window's cycles in which at least one PE did a MAC."""
        n = self.window_lengths
        return np.divide(self.busy_cycles, n, out=np.zeros(len(n)), where=n > 0)

    def pe_utilization(self, num_pes: int) -> np.ndarray:
        """MACs / (window cycles * PEs): the array's utilization per window."""
        n = self.window_lengths * num_pes
        return np.divide(self.macs, n, out=np.zeros(len(n)), where=n > 0)


@dataclass(frozen=True)
class EngineResult:
    """SCALE-Sim's report fields for one layer on one pod (cycles, words)."""

    total_cycles_incl_prefetch: int
    total_cycles: int
    stall_cycles: int
    overall_util_pct: float
    mapping_efficiency_pct: float
    compute_util_pct: float
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int
    ifmap_sram_start_cycle: int
    ifmap_sram_stop_cycle: int
    filter_sram_start_cycle: int
    filter_sram_stop_cycle: int
    ofmap_sram_start_cycle: int
    ofmap_sram_stop_cycle: int
    ifmap_dram_start_cycle: int
    ifmap_dram_stop_cycle: int
    filter_dram_start_cycle: int
    filter_dram_stop_cycle: int
    ofmap_dram_start_cycle: int
    ofmap_dram_stop_cycle: int
    macs: int
    folds: int
    fold_cycles: int
    compute_cycles: int  # stall-free cycles in the timing convention (mapping.gemm's closed form)
    windows: UtilizationWindows | None = field(default=None, compare=False)

    @property
    def avg_ifmap_sram_bw(self) -> float:
        """Words/cycle, as in BANDWIDTH_REPORT."""
        return self.ifmap_sram_reads / self.total_cycles

    @property
    def avg_filter_sram_bw(self) -> float:
        """Words/cycle, as in BANDWIDTH_REPORT."""
        return self.filter_sram_reads / self.total_cycles

    @property
    def avg_ofmap_sram_bw(self) -> float:
        """Words/cycle, as in BANDWIDTH_REPORT."""
        return self.ofmap_sram_writes / self.total_cycles

    @property
    def avg_ifmap_dram_bw(self) -> float:
        """Words/cycle over the DRAM activity span, as in BANDWIDTH_REPORT."""
        span = self.ifmap_dram_stop_cycle - self.ifmap_dram_start_cycle + 1
        return self.ifmap_dram_reads / span

    @property
    def avg_filter_dram_bw(self) -> float:
        """Words/cycle over the DRAM activity span, as in BANDWIDTH_REPORT."""
        span = self.filter_dram_stop_cycle - self.filter_dram_start_cycle + 1
        return self.filter_dram_reads / span

    @property
    def avg_ofmap_dram_bw(self) -> float:
        """Words/cycle over the DRAM activity span, as in BANDWIDTH_REPORT."""
        span = self.ofmap_dram_stop_cycle - self.ofmap_dram_start_cycle + 1
        return self.ofmap_dram_writes / span


# ---------------------------------------------------------------------------------------------
# Closed-form addresses and prefetch orders (Numba)
# ---------------------------------------------------------------------------------------------
# `tab` holds, for each output pixel m, its window origin (oh*s, ow*s) and base address, and
# for each window offset k its (fh, fw) and address offset, so an ifmap address is one add and
# two compares instead of four divisions.
@njit(cache=True, inline="always")
def _ifmap_addr(prm, tab, m, k):
    tm = prm[P_TAB_M] + 3 * m
    tk = prm[P_TAB_K] + 3 * k
    if tab[tm + 1] + tab[tk + 1] >= prm[P_H] or tab[tm + 2] + tab[tk + 2] >= prm[P_W]:
        return -1
    return tab[tm] + tab[tk]


@njit(cache=True)
def _pf_elem(prm, tab, code, row, col):
    """Entry (row, col) of a prefetch matrix (codes: OS/WS/IS x ifmap/filter), -1 if none."""
    if code == 0:  # OS ifmap: (rf*K x R), [fr*K + t, r] = ifmap[fr*R + r, t]
        t_ = prm[P_K]
        fr = row // t_
        m = fr * prm[P_R] + col
        if m >= prm[P_M]:
            return -1
        return _ifmap_addr(prm, tab, m, row - fr * t_)
    if code == 1:  # OS filter: (cf*K x C), [fc*K + t, c] = filter[t, fc*C + c]
        t_ = prm[P_K]
        fc = row // t_
        n = fc * prm[P_C] + col
        if n >= prm[P_N]:
            return -1
        return n * prm[P_K] + row - fc * t_
    if code == 2:  # WS ifmap: (rf*M x R), [fr*M + t, r] = ifmap[t, fr*R + r]
        t_ = prm[P_M]
        fr = row // t_
        k = fr * prm[P_R] + col
        if k >= prm[P_K]:
            return -1
        return _ifmap_addr(prm, tab, row - fr * t_, k)
    if code == 3:  # WS filter: (cf*K x C), [fc*K + k, c] = filter[k, fc*C + c]
        t_ = prm[P_K]
        fc = row // t_
        n = fc * prm[P_C] + col
        if n >= prm[P_N]:
            return -1
        return n * prm[P_K] + row - fc * t_
    if code == 4:  # IS ifmap: (cf*K x C), [fc*K + k, c] = ifmap[fc*C + c, k]
        t_ = prm[P_K]
        fc = row // t_
        m = fc * prm[P_C] + col
        if m >= prm[P_M]:
            return -1
        return _ifmap_addr(prm, tab, m, row - fc * t_)
    # code 5, IS filter: (rf*N x R), [fr*N + t, r] = filter[fr*R + r, t]
    t_ = prm[P_N]
    fr = row // t_
    k = fr * prm[P_R] + col
    if k >= prm[P_K]:
        return -1
    return (row - fr * t_) * prm[P_K] + k


@njit(cache=True)
def _build_occurrences(prm, tab, o, ptr, lines, fill):
    """CSR lists of the buffer lines holding each address of read operand o (USER mode).

    Walks o's prefetch matrix in SCALE-Sim's order (anti-diagonals or row-major), numbering
    valid entries; entry j lies in line j // eps. With several groups the groups' matrices
    follow one another, each in that order, at their own address offset. With fill=False it
    only counts into ptr[addr + 1]; with fill=True it writes lines[] at ptr (a cursor array).
    """
    pb = P_RD + o * P_RD_STRIDE
    rows = prm[pb + RD_PFR]
    cols = prm[pb + RD_PFC]
    code = prm[pb + RD_CODE]
    eps = prm[pb + RD_EPS]
    stride = prm[P_NIFG] if o == 0 else prm[P_NFG]
    j = 0
    for g in range(prm[P_G]):
        base = prm[pb + RD_BASE] + g * stride
        if prm[pb + RD_PFK] == 0:
            for d in range(rows + cols - 1):
                r0 = d if d < rows - 1 else rows - 1
                r1 = d - cols + 1
                if r1 < 0:
                    r1 = 0
                for r in range(r0, r1 - 1, -1):
                    e = _pf_elem(prm, tab, code, r, d - r)
                    if e >= 0:
                        if fill:
                            lines[ptr[base + e]] = j // eps
                            ptr[base + e] += 1
                        else:
                            ptr[base + e + 1] += 1
                        j += 1
        else:
            for r in range(rows):
                for cc in range(cols):
                    e = _pf_elem(prm, tab, code, r, cc)
                    if e >= 0:
                        if fill:
                            lines[ptr[base + e]] = j // eps
                            ptr[base + e] += 1
                        else:
                            ptr[base + e + 1] += 1
                        j += 1
    return j


@njit(cache=True)
def _prefetch_sequence(prm, tab, o, out):
    """Addresses of read operand o's prefetch-matrix entries in SCALE-Sim's fetch order, the
    valid ones only (global index: base + group offset), into out; returns how many.

    The same walk as `_pf_elem` over (row, col) along anti-diagonals or row by row, with the
    fold-stacked row split into (fold, t) kept incrementally instead of divided per entry.
    With several groups the groups' matrices follow one another at their own offsets."""
    pb = P_RD + o * P_RD_STRIDE
    rows = prm[pb + RD_PFR]
    cols = prm[pb + RD_PFC]
    code = prm[pb + RD_CODE]
    M = prm[P_M]
    N = prm[P_N]
    K = prm[P_K]
    H = prm[P_H]
    W = prm[P_W]
    R = prm[P_R]
    C = prm[P_C]
    tk0 = prm[P_TAB_K]
    # per code: the stacked row's period t_, the spatial width, and the spatial limit
    if code == 0:  # OS ifmap: [f*K + t, r] = ifmap[f*R + r, t]
        per, wid, lim = K, R, M
    elif code == 1:  # OS filter: [f*K + t, c] = filter[t, f*C + c]
        per, wid, lim = K, C, N
    elif code == 2:  # WS ifmap: [f*M + t, r] = ifmap[t, f*R + r]
        per, wid, lim = M, R, K
    elif code == 3:  # WS filter: [f*K + k, c] = filter[k, f*C + c]
        per, wid, lim = K, C, N
    elif code == 4:  # IS ifmap: [f*K + k, c] = ifmap[f*C + c, k]
        per, wid, lim = K, C, M
    else:  # IS filter: [f*N + t, r] = filter[f*R + r, t]
        per, wid, lim = N, R, K
    stride = prm[P_NIFG] if o == 0 else prm[P_NFG]
    anti = prm[pb + RD_PFK] == 0
    j = 0
    for g in range(prm[P_G]):
        base = prm[pb + RD_BASE] + g * stride
        nd = rows + cols - 1 if anti else rows
        for d in range(nd):
            if anti:
                r = d if d < rows - 1 else rows - 1
                r1 = d - cols + 1
                if r1 < 0:
                    r1 = 0
                col = d - r
                dc = 1  # walking the anti-diagonal: row down by one, column up by one
            else:
                r = d
                r1 = d
                col = 0
                dc = 0
            f = r // per
            t = r - f * per
            while True:
                ncol = cols if not anti else 1
                for cc in range(ncol):
                    c_ = col + cc
                    x = f * wid + c_
                    if x < lim:
                        if code == 0 or code == 4:  # ifmap[m = x, k = t]
                            tm = 3 * x
                            tk = tk0 + 3 * t
                            if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                                out[j] = base + tab[tm] + tab[tk]
                                j += 1
                        elif code == 2:  # ifmap[m = t, k = x]
                            tm = 3 * t
                            tk = tk0 + 3 * x
                            if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                                out[j] = base + tab[tm] + tab[tk]
                                j += 1
                        elif code == 5:  # filter[k = x, n = t]
                            out[j] = base + t * K + x
                            j += 1
                        else:  # filter[k = t, n = x]
                            out[j] = base + x * K + t
                            j += 1
                if r == r1:
                    break
                r -= 1
                col += dc
                t -= 1
                if t < 0:
                    f -= 1
                    t = per - 1
    return j


@njit(cache=True)
def _scatter_lines(seq, n, eps, cursor, lines):
    """CSR fill: entry j of the fetch order lies in buffer line j // eps (sorted per address)."""
    for j in range(n):
        a = seq[j]
        lines[cursor[a]] = j // eps
        cursor[a] += 1


@njit(cache=True)
def _box3(a, b, t, s):
    """Number of (x, y, z) in [0,a) x [0,b) x [0,t) with x + y + z = s."""
    tot = 0
    for mask in range(8):
        v = s
        sign = 1
        if mask & 1:
            v -= a
            sign = -sign
        if mask & 2:
            v -= b
            sign = -sign
        if mask & 4:
            v -= t
            sign = -sign
        if v >= 0:
            tot += sign * ((v + 1) * (v + 2) // 2)
    return tot


# ---------------------------------------------------------------------------------------------
# Memory services (Numba)
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def _in_window(occ_ptr, occ_line, a, s, n_active, n_lines):
    """Is address a (global index) in a line of the window [s, s + A) modulo n?"""
    lo = occ_ptr[a]
    hi = occ_ptr[a + 1]
    if lo == hi:
        return False
    l = lo
    h = hi
    while l < h:  # first occurrence at a line >= s
        mid = (l + h) >> 1
        if occ_line[mid] < s:
            l = mid + 1
        else:
            h = mid
    end = s + n_active
    if l < hi and occ_line[l] < end:
        return True
    return end > n_lines and occ_line[lo] < end - n_lines


@njit(cache=True)
def _read_user(prm, st, o, occ_ptr, occ_line, addr, c, off):
    """SCALE-Sim USER read of one address at cycle c; returns the updated offset."""
    pb = P_RD + o * P_RD_STRIDE
    sb = S_RD + o * S_RD_STRIDE
    na = prm[pb + RD_A]
    nl = prm[pb + RD_NL]
    if _in_window(occ_ptr, occ_line, addr, st[sb + RS_WIN], na, nl):
        return off
    npl = prm[pb + RD_PL]
    if npl == 0:
        st[S_ERR] = ERR_NO_PREFETCH
        return off
    lp = prm[pb + RD_LP]
    guard = nl // npl + 2
    while True:
        # new_prefetch: the window slides by npl lines; the DRAM clock runs back to back
        st[sb + RS_WIN] = (st[sb + RS_WIN] + npl) % nl
        st[sb + RS_LAST] += lp + 1
        st[sb + RS_NPF] += 1
        st[sb + RS_DRAM] += lp * prm[pb + RD_BW]
        d = st[sb + RS_LAST] - (c + off)
        if prm[P_IDEAL] == 0:
            off += d  # SCALE-Sim: unconditional, and doubled when positive
            if d > 0:
                off += d
        elif d > 0:
            off += d
        if _in_window(occ_ptr, occ_line, addr, st[sb + RS_WIN], na, nl):
            return off
        guard -= 1
        if guard < 0:
            st[S_ERR] = ERR_NEVER_FETCHED
            return off


@njit(cache=True)
def _serve_reads(prm, st, mem, occ_ptr, occ_line, buf, nbuf, c, user, offs):
    """Serve one line's USER reads, ifmap then filter, each in column order; offsets into offs.

    Hits are tested inline (a call per address costs more than the test itself). A USER
    buffer whose lines all fit in its active half always hits (SCALE-Sim's window then covers
    every line), so its demands are not even looked at."""
    for o in range(2):
        pb = P_RD + o * P_RD_STRIDE
        sb = S_RD + o * S_RD_STRIDE
        base = prm[pb + RD_BASE]
        off = 1
        if user and prm[pb + RD_ALLHIT] == 1:
            offs[o] = off
            continue
        if user:
            na = prm[pb + RD_A]
            nl = prm[pb + RD_NL]
            for j in range(nbuf[o]):
                a = base + buf[o, j]
                # inline hit test: the first occurrence at a line >= s lies in [s, s + A)
                s = st[sb + RS_WIN]
                lo = occ_ptr[a]
                hi = occ_ptr[a + 1]
                l = lo
                h = hi
                while l < h:
                    mid = (l + h) >> 1
                    if occ_line[mid] < s:
                        l = mid + 1
                    else:
                        h = mid
                end = s + na
                if l < hi and occ_line[l] < end:
                    continue
                if end > nl and lo < hi and occ_line[lo] < end - nl:
                    continue
                off = _read_user(prm, st, o, occ_ptr, occ_line, a, c, off)
        offs[o] = off


@njit(cache=True)
def _wr_drain(prm, st, q, x, dl):
    """Drain the next ceil(D/B) queued ofmap rows starting at cycle x; returns drain end.

    SCALE-Sim counts every row of a drain as full except the last (padding inside a drain is
    counted); a row counts its nominal size, the drain rate when it was queued."""
    w = S_WR
    cap = q.shape[0]
    nl = prm[P_WR + WR_LD]
    if st[w + WS_QN] < nl:
        nl = st[w + WS_QN]
    if nl == 0:
        st[S_ERR] = ERR_EMPTY_DRAIN
        return x
    head = st[w + WS_QH]
    data = 0
    for j in range(nl - 1):
        data += q[(head + j) % cap] >> 32
    data += q[(head + nl - 1) % cap] & ROW_MASK
    st[w + WS_QH] = (head + nl) % cap
    st[w + WS_QN] -= nl
    st[w + WS_DRAM] += data
    st[w + WS_FREE] += data
    end = x + nl - 1
    if prm[P_TRACE] == 1:
        dl[st[w + WS_NDR], 0] = x
        dl[st[w + WS_NDR], 1] = nl
    if st[w + WS_NDR] == 0:
        st[w + WS_D0] = x
    st[w + WS_NDR] += 1
    if end > st[w + WS_D1]:
        st[w + WS_D1] = end
    return end


@njit(cache=True)
def _write_line(prm, st, q, k, c, dl):
    """Write k ofmap elements at cycle c; returns the ofmap offset (stall) of the line."""
    w = S_WR
    bw = prm[P_WR + WR_BW]
    full = (bw << 32) | bw
    active = prm[P_WR + WR_ACTIVE]
    cap = q.shape[0]
    cur = c
    off = 0
    left = k
    while left > 0:
        free = st[w + WS_FREE]
        dend = st[w + WS_DEND]
        if (cur >= dend and free - left >= active) or (cur < dend and free - left > 0):
            # fast path: no element of the rest of the line can start a drain or stall
            tot = st[w + WS_LIDX] + left
            n_rows = tot // bw
            for _ in range(n_rows):
                q[(st[w + WS_QH] + st[w + WS_QN]) % cap] = full
                st[w + WS_QN] += 1
            st[w + WS_LIDX] = tot - n_rows * bw
            st[w + WS_FREE] = free - left
            break
        left -= 1
        st[w + WS_LIDX] += 1
        st[w + WS_FREE] -= 1
        if st[w + WS_LIDX] == bw:
            q[(st[w + WS_QH] + st[w + WS_QN]) % cap] = full
            st[w + WS_QN] += 1
            st[w + WS_LIDX] = 0
        if cur < st[w + WS_DEND]:
            if st[w + WS_FREE] <= 0:
                off += st[w + WS_DEND] - cur
                cur = st[w + WS_DEND]
        elif st[w + WS_FREE] < active:
            if st[w + WS_LIDX] != 0:  # force-flush the open row
                q[(st[w + WS_QH] + st[w + WS_QN]) % cap] = (bw << 32) | st[w + WS_LIDX]
                st[w + WS_QN] += 1
                st[w + WS_LIDX] = 0
            st[w + WS_DEND] = _wr_drain(prm, st, q, cur, dl)
    return off


# ---------------------------------------------------------------------------------------------
# The line loop (Numba)
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def _win_add(win, n, start, length, col, base):
    """Add `length` cycles starting at global cycle `start` to column `col` of the windows
    (window i of `win` is global window base + i)."""
    x = start
    end = start + length
    while x < end:
        wi = x // n
        wend = (wi + 1) * n
        if wend > end:
            wend = end
        win[wi - base, col] += wend - x
        x = wend


@njit(cache=True)
def _step(prm, tab, st, mem, occ_ptr, occ_line, q, win, frec, bufs, lg, dl, cycle_limit):
    """Run lines until the layer ends, the request cycle reaches cycle_limit, or a buffer fills.

    Line i carries the demands of every fold f with f*delta <= i < f*delta + P (one fold in
    the scalesim convention, where delta = P; overlapping folds in the pipelined one), older
    folds first. Constants are read into locals once: the arrays alias as far as the compiler
    knows, so it would otherwise reload them on every store."""
    df = prm[P_DF]
    R = prm[P_R]
    C = prm[P_C]
    T = prm[P_T]
    SR = prm[P_SR]
    SC = prm[P_SC]
    K = prm[P_K]
    H = prm[P_H]
    W = prm[P_W]
    tk0 = prm[P_TAB_K]
    rowf = prm[P_ROWF]
    fpg = rowf * prm[P_COLF]
    flen = prm[P_FOLDLEN]
    delta = prm[P_DELTA]
    nfolds = prm[P_FOLDS]
    lines = prm[P_LINES]
    nifg = prm[P_NIFG]
    nfg = prm[P_NFG]
    user = prm[P_USER] == 1
    psacc = prm[P_PSACC] == 1
    rec = prm[P_REC] == 1
    tlog = prm[P_TRACE] == 1
    skip_i = user and prm[P_RD + RD_ALLHIT] == 1 and prm[P_NOCLIP] == 1
    skip_f = user and prm[P_RD + P_RD_STRIDE + RD_ALLHIT] == 1
    nwin = prm[P_WIN]
    woff = prm[P_WOFF]
    wbase = woff // nwin if nwin > 0 else 0
    width = bufs.shape[1]
    qcap = q.shape[0]
    sbi = S_RD
    sbf = S_RD + S_RD_STRIDE

    if st[S_PEND] == 1:  # window bookkeeping of the last line, deferred for lack of room
        last_cycle = st[S_PEND_C] + st[S_PEND_SL] + woff
        if last_cycle // nwin - wbase >= win.shape[0]:
            return ST_GROW_WIN
        _win_add(win, nwin, st[S_PEND_C] + woff, st[S_PEND_SL], 1, wbase)
        if st[S_PEND_MACS] > 0:
            win[last_cycle // nwin - wbase, 0] += 1
        win[last_cycle // nwin - wbase, 2] += st[S_PEND_MACS]
        st[S_PEND] = 0

    nbuf = np.zeros(2, dtype=np.int64)
    offs = np.zeros(2, dtype=np.int64)
    line = st[S_LINE]
    stall = st[S_STALL]
    status = ST_DONE
    while line < lines:
        c = line + stall
        if c >= cycle_limit:
            status = ST_LIMIT
            break
        if qcap - st[S_WR + WS_QN] < 2 * width + 2:
            status = ST_GROW_QUEUE
            break
        if tlog and dl.shape[0] - st[S_WR + WS_NDR] < width + 2:
            status = ST_GROW_LOG
            break
        f_hi = line // delta
        if f_hi > nfolds - 1:
            f_hi = nfolds - 1
        f_lo = 0 if line < flen else (line - flen) // delta + 1
        n_i = 0
        n_f = 0
        k_o = 0
        macs = 0
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
            ib = g * nifg
            fb = g * nfg
            # gather this fold's ifmap and filter addresses in column order
            if df == 0:  # OS: both operands stream, skewed by row / column
                lo = tau - T + 1
                if lo < 0:
                    lo = 0
                hi = tau if tau < a - 1 else a - 1
                if skip_i:  # always hits, never clipped: only the count matters
                    if hi >= lo:
                        n_i += hi - lo + 1
                else:
                    for r in range(lo, hi + 1):
                        tm = 3 * (fr * R + r)
                        tk = tk0 + 3 * (tau - r)
                        if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                            bufs[0, n_i] = tab[tm] + tab[tk] + ib
                            n_i += 1
                hi = tau if tau < b - 1 else b - 1
                if skip_f:
                    if hi >= lo:
                        n_f += hi - lo + 1
                else:
                    for cc in range(lo, hi + 1):
                        bufs[1, n_f] = (fc * C + cc) * K + tau - cc + fb
                        n_f += 1
                base = tau - (T - 1)
                clo = base - (R - 1)
                chi = base - (R - a)
                shift = 0
            else:
                # streaming operand: columns r in [tau-R-T+1, tau-R] of [0, a)
                lo = tau - R - T + 1
                if lo < 0:
                    lo = 0
                hi = tau - R
                if hi > a - 1:
                    hi = a - 1
                stat_row = R - 1 - tau  # stationary operand row loaded on this line
                if df == 1:  # WS: ifmap streams, filter stationary
                    if skip_i:
                        if hi >= lo:
                            n_i += hi - lo + 1
                    else:
                        tk = tk0 + 3 * (fr * R + lo)
                        tm = 3 * (tau - R - lo)
                        for r in range(lo, hi + 1):
                            if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                                bufs[0, n_i] = tab[tm] + tab[tk] + ib
                                n_i += 1
                            tk += 3
                            tm -= 3
                    if tau < R and stat_row < a:
                        if skip_f:
                            n_f += b
                        else:
                            for cc in range(b):
                                bufs[1, n_f] = (fc * C + cc) * K + fr * R + stat_row + fb
                                n_f += 1
                else:  # IS: ifmap stationary, filter streams
                    if tau < R and stat_row < a:
                        if skip_i:
                            n_i += b
                        else:
                            tk = tk0 + 3 * (fr * R + stat_row)
                            for cc in range(b):
                                tm = 3 * (fc * C + cc)
                                if tab[tm + 1] + tab[tk + 1] < H and tab[tm + 2] + tab[tk + 2] < W:
                                    bufs[0, n_i] = tab[tm] + tab[tk] + ib
                                    n_i += 1
                    if skip_f:
                        if hi >= lo:
                            n_f += hi - lo + 1
                    else:
                        for r in range(lo, hi + 1):
                            bufs[1, n_f] = (tau - R - r) * K + fr * R + r + fb
                            n_f += 1
                base = tau - (2 * R - 1)
                clo = base - (T - 1)
                chi = base
                shift = R
                if psacc and fr != rowf - 1:
                    chi = -1  # partial sums stay on chip
            # ofmap elements written on this line: columns c in [clo, chi] of [0, b)
            if clo < 0:
                clo = 0
            if chi > b - 1:
                chi = b - 1
            if chi >= clo:
                k_o += chi - clo + 1
            if nwin > 0:
                macs += _box3(a, b, T, tau - shift)
        nbuf[0] = n_i
        nbuf[1] = n_f
        if user:
            _serve_reads(prm, st, mem, occ_ptr, occ_line, bufs, nbuf, c, user, offs)
        else:  # CALC, inline: most demands hit the current epoch
            offs[0] = 1
            offs[1] = 1
            for o in range(2):
                sb = S_RD + o * S_RD_STRIDE
                ep = st[sb + RS_EPOCH]
                inset = st[sb + RS_INSET]
                nread = 0
                items = prm[P_RD + o * P_RD_STRIDE + RD_ITEMS]
                base = prm[P_RD + o * P_RD_STRIDE + RD_BASE]
                for j in range(nbuf[o]):
                    aa = base + bufs[o, j]
                    if mem[aa] != ep:  # SCALE-Sim's CALC read, counters in registers
                        mem[aa] = ep
                        nread += 1
                        inset += 1
                        if inset == items:
                            inset = 0
                            st[sb + RS_SETS] += 1
                            if st[sb + RS_SETS] == SETS_PER_HALF:
                                st[sb + RS_SETS] = 0
                                ep += 1
                                st[sb + RS_EPOCH] = ep
                                if st[sb + RS_NEV] >= 1 and st[sb + RS_LASTEV] == c:
                                    st[sb + RS_BAD] = 1  # SCALE-Sim divides by zero here
                                st[sb + RS_NEV] += 1
                                st[sb + RS_LASTEV] = c
                st[sb + RS_INSET] = inset
                st[sb + RS_DRAM] += nread
        off_i = offs[0]
        off_f = offs[1]
        off_o = _write_line(prm, st, q, k_o, c, dl)
        if tlog:
            lg[line, 0] = c
            lg[line, 1] = off_i
            lg[line, 2] = off_f
            lg[line, 3] = off_o
            lg[line, 4] = k_o
            lg[line, 5] = st[sbi + RS_NPF]
            lg[line, 6] = st[sbi + RS_LAST]
            lg[line, 7] = st[sbf + RS_NPF]
            lg[line, 8] = st[sbf + RS_LAST]
            lg[line, 9] = prm[P_RD + RD_BW]
            lg[line, 10] = prm[P_RD + P_RD_STRIDE + RD_BW]

        # CALC: remember the first line that demands each operand (times the first prefetch)
        if not user:
            if n_i > 0 and st[sbi + RS_FIRST] == NO_CYCLE:
                st[sbi + RS_FIRST] = c
            if n_f > 0 and st[sbf + RS_FIRST] == NO_CYCLE:
                st[sbf + RS_FIRST] = c
        # SRAM activity spans (service cycles of the first / last demanding line)
        if n_i > 0:
            if st[sbi + RS_SRAM0] == NO_CYCLE:
                st[sbi + RS_SRAM0] = c + off_i
            st[sbi + RS_SRAM1] = c + off_i
        if n_f > 0:
            if st[sbf + RS_SRAM0] == NO_CYCLE:
                st[sbf + RS_SRAM0] = c + off_f
            st[sbf + RS_SRAM1] = c + off_f
        if k_o > 0:
            if st[S_WR + WS_SRAM0] == NO_CYCLE:
                st[S_WR + WS_SRAM0] = c + off_o
            st[S_WR + WS_SRAM1] = c + off_o
        if c + off_o > st[S_TOTAL]:
            st[S_TOTAL] = c + off_o
        st[S_LASTOUT] = c + off_o

        sl = off_i - 1
        if off_f - 1 > sl:
            sl = off_f - 1
        if off_o > sl:
            sl = off_o
        if rec:
            if line == f_hi * delta:  # the newest fold starts on this line
                frec[f_hi, 0] = c + woff
                frec[f_hi, 2] = -stall
            if line - f_lo * delta == flen - 1:  # the oldest fold ends on this line
                frec[f_lo, 1] = c + sl + 1 + woff
                frec[f_lo, 2] += stall + sl
        stall += sl
        line += 1
        if st[S_ERR] != 0:
            status = ST_ERROR
            break

        if nwin > 0:
            last_cycle = c + sl + woff
            wl = last_cycle // nwin - wbase
            if wl >= win.shape[0]:
                st[S_PEND] = 1
                st[S_PEND_C] = c
                st[S_PEND_SL] = sl
                st[S_PEND_MACS] = macs
                status = ST_GROW_WIN
                break
            _win_add(win, nwin, c + woff, sl, 1, wbase)
            if macs > 0:
                win[wl, 0] += 1
            win[wl, 2] += macs
    st[S_LINE] = line
    st[S_STALL] = stall
    return status


@njit(cache=True)
def _drain_all(prm, st, q, cycle, dl):
    """Flush the open ofmap row and drain every queued row back to back from `cycle`."""
    w = S_WR
    cap = q.shape[0]
    if st[w + WS_LIDX] != 0:
        q[(st[w + WS_QH] + st[w + WS_QN]) % cap] = (prm[P_WR + WR_BW] << 32) | st[w + WS_LIDX]
        st[w + WS_QN] += 1
        st[w + WS_LIDX] = 0
    while st[w + WS_QN] > 0 and st[S_ERR] == 0:
        end = _wr_drain(prm, st, q, cycle, dl)
        st[w + WS_DEND] = end
        cycle = end + 1


@njit(cache=True)
def _fold_stats(prm):
    """SCALE-Sim's mean mapping efficiency and compute utilization over folds, in fold order."""
    R = prm[P_R]
    C = prm[P_C]
    T = prm[P_T]
    rowf = prm[P_ROWF]
    colf = prm[P_COLF]
    if prm[P_DF] == 0:
        q = T + R + C - 2
    else:
        q = 2 * R + 2 * C + T - 3
    me = 0.0
    cu = 0.0
    rc = R * C
    for fc in range(colf):
        b = prm[P_SC] - fc * C
        if b > C:
            b = C
        for fr in range(rowf):
            a = prm[P_SR] - fr * R
            if a > R:
                a = R
            me += (a * b) / rc
            cu += (a * b * T) / (rc * q)
    nf = rowf * colf
    return me / nf, cu / nf


# ---------------------------------------------------------------------------------------------
# Python driver
# ---------------------------------------------------------------------------------------------
def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _address_tables(shape: ConvShape, m0: int = 0, m1: int | None = None, k0: int = 0,
                    k1: int | None = None) -> np.ndarray:
    """Per-m (base, oh*s, ow*s) and per-k (offset, fh, fw) ifmap address tables of a tile."""
    s, H, W, C = shape.stride, shape.ifmap_h, shape.ifmap_w, shape.channels
    m = np.arange(m0, shape.m if m1 is None else m1, dtype=np.int64)
    img, pix = np.divmod(m, shape.ofmap_h * shape.ofmap_w)
    ohs, ows = (pix // shape.ofmap_w) * s, (pix % shape.ofmap_w) * s
    k = np.arange(k0, shape.k if k1 is None else k1, dtype=np.int64)
    fh, rem = np.divmod(k, shape.filter_w * C)
    fw, ch = np.divmod(rem, C)
    tab_m = np.stack([img * (H * W * C) + (ohs * W + ows) * C, ohs, ows], axis=1).ravel()
    tab_k = np.stack([(fh * W + fw) * C + ch, fh, fw], axis=1).ravel()
    return np.concatenate([tab_m, tab_k])


def _tile_ranges(shape: ConvShape, tile) -> tuple[int, int, int, int, int, int]:
    """(m0, m1, n0, n1, k0, k1) of `tile` (None: the whole layer), checked against `shape`."""
    if tile is None:
        return 0, shape.m, 0, shape.n, 0, shape.k
    try:
        m0, m1, n0, n1, k0, k1 = (int(x) for x in tile)
    except (TypeError, ValueError):
        raise EngineError(f"tile = {tile!r}: expected (m0, m1, n0, n1, k0, k1)") from None
    for ax, lo, hi, top in (("m", m0, m1, shape.m), ("n", n0, n1, shape.n), ("k", k0, k1, shape.k)):
        if not 0 <= lo < hi <= top:
            raise EngineError(f"tile {ax} range [{lo}, {hi}): expected a non-empty range within "
                              f"[0, {top}) of layer {shape}")
    return m0, m1, n0, n1, k0, k1


class PodEngine:
    """One pod running one layer (or a tile of it); `step` advances it, `result` reads the numbers.

    State is plain NumPy arrays (parameters, counters, per-address words, the ofmap row queue
    and the utilization windows), so a multi-pod driver can step many pods in lockstep and
    change their DRAM bandwidth between steps (`set_bandwidth`). Memory: CALC keeps one int32
    per ifmap and filter word; USER keeps, per address, the buffer lines that hold it (one
    int32 per entry of SCALE-Sim's prefetch matrices, i.e. per operand-matrix entry); the
    ofmap queue is bounded by the SRAM; windows by the trace asked for; fold records (when
    asked for) by the folds. Nothing grows with the cycle count.

    Beyond SCALE-Sim's single layer: `tile` = (m0, m1, n0, n1, k0, k1) runs only that box of
    the layer's GEMM (the folds of the sub-GEMM, in SCALE-Sim's order, with the layer's real
    ifmap addresses, so window overlaps and clipping are those of the layer); `groups` runs G
    copies of the tile back to back in one fold stream with disjoint addresses (a grouped
    layer in the pipelined convention; SCALE-Sim runs groups as separate layers, so the
    scalesim convention uses one engine per group); `window_offset` is the global cycle of
    this engine's cycle 0 (windows and fold records are aligned to the global timeline);
    `psum_on_chip` (pipelined WS/IS) keeps partial sums in the accumulators so that only the
    last row fold writes outputs; `record_folds` keeps each fold's start, end and stalls;
    `trace` logs every line (cycle, offsets, prefetch clocks: 11 int64) and every ofmap drain,
    for `cosim.address_traces` (memory then grows with the lines, as the traces do).
    """

    def __init__(self, shape: ConvShape, spec: PodSpec, window_cycles: int | None = None, *,
                 tile=None, groups: int = 1, window_offset: int = 0, psum_on_chip: bool = False,
                 record_folds: bool = False, trace: bool = False):
        if window_cycles is not None and (int(window_cycles) != window_cycles or window_cycles < 1):
            raise EngineError(f"window_cycles = {window_cycles!r}: expected a positive integer")
        if int(groups) != groups or groups < 1:
            raise EngineError(f"groups = {groups!r}: expected a positive integer")
        if int(window_offset) != window_offset or window_offset < 0:
            raise EngineError(f"window_offset = {window_offset!r}: expected a non-negative integer")
        self.shape = shape
        self.spec = spec
        self.window_cycles = int(window_cycles) if window_cycles else 0
        self.window_offset = int(window_offset)
        self.groups = G = int(groups)
        m0, m1, n0, n1, k0, k1 = self.tile = _tile_ranges(shape, tile)
        df = spec.dataflow
        R, C = spec.rows, spec.cols
        M, N, K = m1 - m0, n1 - n0, k1 - k0
        self.m, self.n, self.k = M, N, K
        sr, sc, t = {"os": (M, N, K), "ws": (K, N, M), "is": (K, M, N)}[df]
        rowf, colf = _ceil_div(sr, R), _ceil_div(sc, C)
        flen = t + R + C - 2 if df == "os" else 2 * R + C + t - 2
        pipelined = spec.timing == "pipelined"
        delta = max(t, R) if pipelined else flen
        self.folds = G * rowf * colf
        self.fold_cycles = flen
        self.fold_delta = delta
        user = spec.bandwidth_mode == "user"

        self.tab = _address_tables(shape, m0, m1, k0, k1)
        # a tile touches only part of the layer's ifmap: number its addresses from its lowest
        # (a uniform shift, so hits and misses are unchanged; `ifmap_base` restores them)
        base_m, off_k = self.tab[0:3 * M:3], self.tab[3 * M::3]
        self.ifmap_base = int(base_m.min() + off_k.min())
        n_if = int(base_m.max() + off_k.max()) - self.ifmap_base + 1
        self.tab[0:3 * M:3] -= self.ifmap_base
        noclip = (int(self.tab[1:3 * M:3].max() + self.tab[3 * M + 1::3].max()) < shape.ifmap_h
                  and int(self.tab[2:3 * M:3].max() + self.tab[3 * M + 2::3].max()) < shape.ifmap_w)
        prm = np.zeros(P_SIZE, dtype=np.int64)
        prm[P_DF] = DATAFLOWS.index(df)
        prm[P_R], prm[P_C] = R, C
        prm[P_H], prm[P_W], prm[P_N] = shape.ifmap_h, shape.ifmap_w, N
        prm[P_M], prm[P_K] = M, K
        prm[P_SR], prm[P_SC], prm[P_T] = sr, sc, t
        prm[P_ROWF], prm[P_COLF] = rowf, colf
        prm[P_FOLDLEN] = flen
        prm[P_DELTA] = delta
        prm[P_FOLDS] = self.folds
        prm[P_LINES] = (self.folds - 1) * delta + flen
        prm[P_USER] = 1 if user else 0
        prm[P_IDEAL] = 1 if spec.memory_model == "ideal-fixed" else 0
        prm[P_WIN] = self.window_cycles
        prm[P_WOFF] = self.window_offset
        prm[P_TAB_M], prm[P_TAB_K] = 0, 3 * M
        prm[P_G], prm[P_NIFG], prm[P_NFG] = G, n_if, K * N
        prm[P_PSACC] = 1 if (psum_on_chip and pipelined and df != "os") else 0
        prm[P_REC] = 1 if record_folds else 0
        prm[P_NOCLIP] = 1 if noclip else 0
        prm[P_TRACE] = 1 if trace else 0

        # prefetch matrix (rows, cols, kind 0 = anti-diagonal / 1 = row-major, code) per operand
        pf = {
            "os": ((rowf * K, R, 0, 0), (colf * K, C, 0, 1)),
            "ws": ((rowf * M, R, 0, 2), (colf * K, C, 1, 3)),
            "is": ((colf * K, C, 1, 4), (rowf * N, R, 0, 5)),
        }[df]
        sizes = (spec.ifmap_sram_words, spec.filter_sram_words)
        bws = (spec.ifmap_dram_bw_words, spec.filter_dram_bw_words) if user else (CALC_READ_BW,) * 2
        self._n_init = [0, 0]
        self._init_bw = bws
        for o in range(2):
            b = P_RD + o * P_RD_STRIDE
            e = sizes[o]
            active = int(math.ceil(e * 0.5))
            pfsz = e - active
            rows, cols, kind, code = pf[o]
            prm[b + RD_EPS] = _ceil_div(e, 100)
            prm[b + RD_PFR], prm[b + RD_PFC] = rows, cols
            prm[b + RD_PFK], prm[b + RD_CODE] = kind, code
            prm[b + RD_BW], prm[b + RD_LP] = bws[o], _ceil_div(pfsz, bws[o])
            prm[b + RD_PFSZ] = pfsz
            prm[b + RD_ITEMS] = e // 100
            prm[b + RD_BASE] = 0 if o == 0 else G * n_if
            # first prefetch: the active half's worth of fetch-matrix rows of B words
            self._n_init[o] = min(_ceil_div(active, bws[o]), _ceil_div(G * rows * cols, bws[o]))
        e_o = spec.ofmap_sram_words
        wbw = spec.ofmap_dram_bw_words if user else C
        prm[P_WR + WR_ACTIVE] = int(math.ceil(e_o * 0.5))
        prm[P_WR + WR_DRAIN] = e_o - int(math.ceil(e_o * 0.5))
        prm[P_WR + WR_BW] = wbw
        prm[P_WR + WR_LD] = _ceil_div(int(prm[P_WR + WR_DRAIN]), wbw)

        n_addr = G * (n_if + K * N)
        if user:
            # lines of each read buffer, and for each address the lines that hold it (CSR)
            seqs = [None, None]
            nvalid = [0, 0]
            for o in range(2):
                rows, cols = pf[o][0], pf[o][1]
                eps = int(prm[P_RD + o * P_RD_STRIDE + RD_EPS])
                a_max = _ceil_div(int(math.ceil(sizes[o] * 0.5)), eps)
                nvalid[o] = G * rows * cols  # an upper bound until the sequence is built
                if nvalid[o] // eps + 1 <= a_max:
                    continue  # every line fits in the active half: always a hit, no lookups
                seq = np.empty(G * rows * cols, dtype=np.int32)
                nvalid[o] = _prefetch_sequence(prm, self.tab, o, seq)
                seqs[o] = seq
            self.occ_ptr = np.zeros(n_addr + 1, dtype=np.int64)
            built = [o for o in range(2) if seqs[o] is not None]
            if built:
                counts = sum(np.bincount(seqs[o][: nvalid[o]], minlength=n_addr) for o in built)
                np.cumsum(counts, out=self.occ_ptr[1:])
                del counts
            self.occ_line = np.empty(int(self.occ_ptr[-1]), dtype=np.int32)
            cursor = self.occ_ptr[:-1].copy()
            for o in built:
                eps = int(prm[P_RD + o * P_RD_STRIDE + RD_EPS])
                _scatter_lines(seqs[o], nvalid[o], eps, cursor, self.occ_line)
            del seqs, cursor
            for o in range(2):
                b = P_RD + o * P_RD_STRIDE
                e, eps = sizes[o], int(prm[b + RD_EPS])
                active = int(math.ceil(e * 0.5))
                nl = nvalid[o] // eps + 1  # the last line holds the rest (maybe nothing)
                na = min(_ceil_div(active, eps), nl)
                prm[b + RD_NL], prm[b + RD_A] = nl, na
                prm[b + RD_PL] = min(_ceil_div(e - active, eps), nl - na)
                prm[b + RD_ALLHIT] = 1 if nl <= na else 0
            self.mem = np.zeros(1, dtype=np.int32)
        else:
            self.occ_ptr = np.zeros(1, dtype=np.int64)
            self.occ_line = np.zeros(1, dtype=np.int32)
            self.mem = np.full(n_addr, -1, dtype=np.int32)  # CALC epoch stamps
        self.prm = prm

        st = np.zeros(S_SIZE, dtype=np.int64)
        st[S_TOTAL] = -1
        for o in range(2):
            sb = S_RD + o * S_RD_STRIDE
            st[sb + RS_SRAM0] = st[sb + RS_SRAM1] = NO_CYCLE
            st[sb + RS_FIRST] = NO_CYCLE
            st[sb + RS_LAST] = -1
            st[sb + RS_DRAM] = self._n_init[o] * bws[o] if user else 0
        st[S_WR + WS_FREE] = e_o
        st[S_WR + WS_SRAM0] = st[S_WR + WS_SRAM1] = NO_CYCLE
        st[S_WR + WS_D0] = st[S_WR + WS_D1] = NO_CYCLE
        self.st = st

        # overlapping folds (pipelined) share a line: room for all of their demands
        width = max(R, C) * _ceil_div(flen, delta)
        self.bufs = np.zeros((2, width), dtype=np.int64)
        self.q = np.zeros(int(4 * prm[P_WR + WR_LD] + 4 * width + 64), dtype=np.int64)
        if self.window_cycles:
            n = self.window_cycles
            ncap = (int(prm[P_LINES]) + self.window_offset % n) // n + 2
            self.win = np.zeros((ncap, 3), dtype=np.int64)
        else:
            self.win = np.zeros((1, 3), dtype=np.int64)
        self.frec = np.full((self.folds if record_folds else 1, 3), -1, dtype=np.int64)
        self.frec[:, 2] = 0
        self.lg = np.zeros((self.lines if trace else 1, LOG_COLS), dtype=np.int64)
        self.dl = np.zeros((256 + 2 * width if trace else 1, 2), dtype=np.int64)
        self.done = False

    @property
    def lines(self) -> int:
        """Demand lines (array cycles without stalls) of the layer."""
        return int(self.prm[P_LINES])

    @property
    def compute_cycles(self) -> int:
        """Stall-free cycles in the engine's convention: SCALE-Sim's last-cycle index (lines - 1)
        for ``scalesim``, the cycle count (lines) for ``pipelined`` (as `mapping.gemm`)."""
        return self.lines - (1 if self.spec.timing == "scalesim" else 0)

    @property
    def cycle(self) -> int:
        """Request cycle of the next line (lines done + stalls so far), engine-local."""
        return int(self.st[S_LINE] + self.st[S_STALL])

    @property
    def stall_cycles(self) -> int:
        """Stall cycles so far."""
        return int(self.st[S_STALL])

    @property
    def memory_bytes(self) -> int:
        """Bytes held in the engine's arrays (grows with the layer's operands, not cycles)."""
        return sum(a.nbytes for a in (self.prm, self.st, self.tab, self.mem, self.occ_ptr,
                                      self.occ_line, self.q, self.win, self.frec, self.bufs, self.lg,
                                      self.dl))

    def bandwidth(self) -> tuple[int, int, int]:
        """Current DRAM rates (ifmap, filter, ofmap) in words/cycle."""
        p = self.prm
        return (int(p[P_RD + RD_BW]), int(p[P_RD + P_RD_STRIDE + RD_BW]), int(p[P_WR + WR_BW]))

    def set_bandwidth(self, ifmap_words: int, filter_words: int, ofmap_words: int) -> None:
        """Change the DRAM rates (USER mode) from the next line on.

        Later prefetches take ceil(half / B) + 1 cycles at the new rate; ofmap rows queued from
        now on hold B words (rows already queued keep their size and still drain one per cycle,
        and an open row already longer than the new B is queued as it is)."""
        if self.spec.bandwidth_mode != "user":
            raise EngineError("set_bandwidth: only USER mode has finite DRAM bandwidth "
                              f"(bandwidth_mode = {self.spec.bandwidth_mode!r})")
        for name, v in (("ifmap_words", ifmap_words), ("filter_words", filter_words),
                        ("ofmap_words", ofmap_words)):
            if int(v) != v or v < 1:
                raise EngineError(f"set_bandwidth: {name} = {v!r}: expected a positive integer")
        p, st = self.prm, self.st
        for o, bw in ((0, int(ifmap_words)), (1, int(filter_words))):
            b = P_RD + o * P_RD_STRIDE
            p[b + RD_BW] = bw
            p[b + RD_LP] = _ceil_div(int(p[b + RD_PFSZ]), bw)
        bw = int(ofmap_words)
        if bw != p[P_WR + WR_BW]:
            lidx = int(st[S_WR + WS_LIDX])
            if lidx >= bw:
                if self.q.shape[0] - st[S_WR + WS_QN] < 2:
                    self._grow_queue()
                cap = self.q.shape[0]
                self.q[(st[S_WR + WS_QH] + st[S_WR + WS_QN]) % cap] = (lidx << 32) | lidx
                st[S_WR + WS_QN] += 1
                st[S_WR + WS_LIDX] = 0
            p[P_WR + WR_BW] = bw
            p[P_WR + WR_LD] = _ceil_div(int(p[P_WR + WR_DRAIN]), bw)
            need = int(4 * p[P_WR + WR_LD] + 4 * self.bufs.shape[1] + 64)
            while self.q.shape[0] < need:
                self._grow_queue()

    def _grow_queue(self):
        cap = self.q.shape[0]
        head, n = int(self.st[S_WR + WS_QH]), int(self.st[S_WR + WS_QN])
        new = np.zeros(2 * cap, dtype=np.int64)
        new[:n] = self.q[(head + np.arange(n)) % cap]
        self.q = new
        self.st[S_WR + WS_QH] = 0

    def _grow_drain_log(self, room: int):
        used = int(self.st[S_WR + WS_NDR])
        size = max(2 * self.dl.shape[0], used + room + 2 * self.bufs.shape[1] + 2)
        new = np.zeros((size, 2), dtype=np.int64)
        new[:used] = self.dl[:used]
        self.dl = new

    def line_log(self) -> np.ndarray:
        """(lines, 11) per-line log of a `trace=True` engine (see LOG_COLS)."""
        if not self.prm[P_TRACE]:
            raise EngineError("line_log: the engine was built without trace=True")
        return self.lg[: int(self.st[S_LINE])]

    def drain_log(self) -> np.ndarray:
        """(drains, 2) start cycle and rows of every ofmap drain of a `trace=True` engine."""
        if not self.prm[P_TRACE]:
            raise EngineError("drain_log: the engine was built without trace=True")
        return self.dl[: int(self.st[S_WR + WS_NDR])]

    def _grow_windows(self):
        new = np.zeros((2 * self.win.shape[0], 3), dtype=np.int64)
        new[: self.win.shape[0]] = self.win
        self.win = new

    def _raise_error(self):
        code = int(self.st[S_ERR])
        raise EngineError(f"engine: {_ERR_TEXT.get(code, f'error {code}')} (layer {self.shape}, "
                          f"pod {self.spec}, line {int(self.st[S_LINE])})")

    def step(self, cycle_limit: int | None = None) -> bool:
        """Advance until the layer is done or the next line would start at >= cycle_limit
        (engine-local cycles). Returns True when the layer is done (ofmap buffer drained)."""
        if self.done:
            return True
        limit = np.iinfo(np.int64).max if cycle_limit is None else int(cycle_limit)
        while True:
            status = _step(self.prm, self.tab, self.st, self.mem, self.occ_ptr, self.occ_line,
                           self.q, self.win, self.frec, self.bufs, self.lg, self.dl, limit)
            if status == ST_GROW_QUEUE:
                self._grow_queue()
            elif status == ST_GROW_LOG:
                self._grow_drain_log(0)
            elif status == ST_GROW_WIN:
                self._grow_windows()
            elif status == ST_LIMIT:
                return False
            elif status == ST_ERROR:
                self._raise_error()
            else:
                break
        for o in range(2):
            if self.st[S_RD + o * S_RD_STRIDE + RS_BAD]:
                raise EngineError(
                    f"{('ifmap', 'filter')[o]} SRAM: two CALC prefetch epochs end in the same "
                    "cycle; SCALE-Sim 3.0.0 divides by zero here (use a larger SRAM)")
        if self.prm[P_TRACE]:
            self._grow_drain_log(int(self.st[S_WR + WS_QN]) + 2)
        _drain_all(self.prm, self.st, self.q, self.st[S_LASTOUT], self.dl)
        if self.st[S_ERR]:
            self._raise_error()
        self.done = True
        return True

    @property
    def timeline_cycles(self) -> int:
        """Cycles the array is occupied: lines plus stalls (engine-local 0 .. this - 1)."""
        return self.lines + int(self.st[S_STALL])

    def window_counts(self) -> tuple[int, np.ndarray]:
        """(first global window index, array (n, 3) of busy cycles, stall cycles, MACs) so far."""
        if not self.window_cycles:
            raise EngineError("window_counts: the engine was built without window_cycles")
        n = self.window_cycles
        base = self.window_offset // n
        end = self.window_offset + self.lines + int(self.st[S_STALL])
        nw = _ceil_div(end, n) - base
        return base, self.win[:nw].copy()

    def fold_records(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start cycle, end cycle, stall cycles) of every fold in schedule order (global
        cycles: window_offset + local). A fold spans [start, end); -1 = not reached yet."""
        if not self.prm[P_REC]:
            raise EngineError("fold_records: the engine was built without record_folds=True")
        return self.frec[:, 0].copy(), self.frec[:, 1].copy(), self.frec[:, 2].copy()

    def result(self) -> EngineResult:
        """SCALE-Sim's report numbers for the finished layer (tile)."""
        if not self.done:
            raise EngineError("PodEngine.result(): the layer has not finished; call step()")
        prm, st, spec = self.prm, self.st, self.spec
        R, C = spec.rows, spec.cols
        M, N, K, G = self.m, self.n, self.k, self.groups
        rowf, colf = int(prm[P_ROWF]), int(prm[P_COLF])
        df = spec.dataflow
        quirk = spec.timing == "scalesim"
        if df == "os":  # SCALE-Sim's OS counter adds R + C per fold to the ofmap writes
            sram = (colf * M * K, rowf * K * N, M * N + (rowf * colf * (R + C) if quirk else 0))
        elif df == "ws":
            sram = (colf * M * K, K * N, rowf * M * N)
        else:
            sram = (K * M, colf * K * N, rowf * M * N)
        sram = tuple(G * x for x in sram)
        user = spec.bandwidth_mode == "user"
        dram = []
        for o in range(2):
            sb = S_RD + o * S_RD_STRIDE
            reads = int(st[sb + RS_DRAM])
            if user:
                start, stop = -self._n_init[o], int(st[sb + RS_LAST])
            else:
                items = int(prm[P_RD + o * P_RD_STRIDE + RD_ITEMS])
                if st[sb + RS_NEV] > 0:
                    start = int(st[sb + RS_FIRST]) - _ceil_div(SETS_PER_HALF * items, CALC_READ_BW)
                    stop = int(st[sb + RS_LASTEV]) + 1
                else:
                    nsets = _ceil_div(reads, items)
                    start, stop = -_ceil_div(nsets * items, CALC_READ_BW), -1
            dram.append((start, stop, reads))
        w = S_WR
        o_start, o_stop = int(st[w + WS_D0]), int(st[w + WS_D1])
        total = int(st[S_TOTAL]) + (0 if quirk else 1)  # pipelined counts cycles (mapping.gemm)
        me, cu = _fold_stats(prm)
        macs = G * M * N * K

        def span(i0, i1):
            a, b = int(st[i0]), int(st[i1])
            return (0 if a == NO_CYCLE else a), (0 if b == NO_CYCLE else b)

        si = span(S_RD + RS_SRAM0, S_RD + RS_SRAM1)
        sf = span(S_RD + S_RD_STRIDE + RS_SRAM0, S_RD + S_RD_STRIDE + RS_SRAM1)
        so = span(w + WS_SRAM0, w + WS_SRAM1)
        windows = None
        if self.window_cycles:
            n = self.window_cycles
            base, counts = self.window_counts()
            nw = len(counts)
            lo = np.maximum((base + np.arange(nw)) * n, self.window_offset)
            hi = np.minimum((base + np.arange(nw) + 1) * n, self.window_offset + self.timeline_cycles)
            lengths = (hi - lo).astype(np.int64)
            busy, stall = counts[:, 0].copy(), counts[:, 1].copy()
            windows = UtilizationWindows(n, busy, stall, lengths - busy - stall, counts[:, 2].copy())
        return EngineResult(
            total_cycles_incl_prefetch=int(o_stop - min(dram[0][0], dram[1][0])),
            total_cycles=total,
            stall_cycles=int(st[S_STALL]),
            overall_util_pct=(macs * 100) / (total * R * C),
            mapping_efficiency_pct=me * 100,
            compute_util_pct=cu * 100,
            ifmap_sram_reads=sram[0], filter_sram_reads=sram[1], ofmap_sram_writes=sram[2],
            ifmap_dram_reads=dram[0][2], filter_dram_reads=dram[1][2],
            ofmap_dram_writes=int(st[w + WS_DRAM]),
            ifmap_sram_start_cycle=si[0], ifmap_sram_stop_cycle=si[1],
            filter_sram_start_cycle=sf[0], filter_sram_stop_cycle=sf[1],
            ofmap_sram_start_cycle=so[0], ofmap_sram_stop_cycle=so[1],
            ifmap_dram_start_cycle=dram[0][0], ifmap_dram_stop_cycle=dram[0][1],
            filter_dram_start_cycle=dram[1][0], filter_dram_stop_cycle=dram[1][1],
            ofmap_dram_start_cycle=o_start, ofmap_dram_stop_cycle=o_stop,
            macs=macs, folds=self.folds, fold_cycles=self.fold_cycles,
            compute_cycles=self.compute_cycles,
            windows=windows,
        )


def simulate_layer(shape: ConvShape, spec: PodSpec, window_cycles: int | None = None,
                   **kw) -> EngineResult:
    """Run one layer on one pod and return SCALE-Sim 3.0.0's report numbers for it
    (keywords as `PodEngine`: tile, groups, psum_on_chip)."""
    eng = PodEngine(shape, spec, window_cycles=window_cycles, **kw)
    eng.step()
    return eng.result()


def step_lockstep(engines: list[PodEngine], quantum_cycles: int, between=None) -> int:
    """Step pods together, `quantum_cycles` at a time, calling `between(engines, cycle)` after
    each quantum (where a multi-pod driver arbitrates shared bandwidth); returns the quanta."""
    if quantum_cycles < 1:
        raise EngineError(f"quantum_cycles = {quantum_cycles!r}: expected a positive integer")
    cycle = 0
    quanta = 0
    while not all(e.done for e in engines):
        cycle += quantum_cycles
        for e in engines:
            if not e.done:
                e.step(cycle)
        quanta += 1
        if between is not None:
            between(engines, cycle)
    return quanta
