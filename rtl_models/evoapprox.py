"""Import EvoApprox 8x8 multipliers: headers, directory walk, simulation and metric check.

Two layouts are recognized (only 8x8 multipliers are imported):

* EvoApproxLib LITE: ``multiplers/8x8_unsigned/pareto_pwr_*/`` and
  ``multiplers/8x8_signed/pareto_pwr_*/`` (upstream spells the folder "multiplers"; the
  correct spelling is accepted too). Headers are ``// KEY = VALUE [unit]`` lines in the
  ``.v`` and ``.c`` files.
* EvoApprox8b: ``multipliers_8/`` (unsigned). Headers are ``// KEY = VALUE`` in ``.v`` files
  and ``///  KEY = VALUE`` in ``.c`` files; 8b powers are in uW.

Each circuit NAME may come as ``NAME.v``, ``NAME_pdk45.v`` and ``NAME_gen.v``; the first of
those that exists is read (the others describe the same function). Its header, completed by
the ``NAME.c`` header, gives the published figures. The netlist is simulated exhaustively and
the error metrics are recomputed and compared with the header within the printed rounding
(half a unit of the last printed digit).

What EvoApprox's relative errors mean (found by recomputing real files, see
`RELATIVE_ERROR_CONVENTIONS`): both libraries take |approx - exact| / |exact|; EvoApproxLib
LITE averages MRE over the pairs whose exact product is non-zero (our `error_metrics`
definition: e.g. its all-zero multiplier publishes MRE 100.00 %, not 99.22 %), while
EvoApprox8b averages over all 65,536 pairs (mul8_004 publishes MRE 9.76 % = our 9.84 % x
65,025 / 65,536). WCRE is the largest relative error over non-zero exact products. Values above
100 % come from small exact products (mul8_004: 253.125 % at a non-zero exact product), not
from a max(1, |exact|) denominator. Neither library says what a pair with exact product 0 and
a non-zero approximate product contributes (none of the files checked has one); for such a
table MRE/WCRE are compared against each plausible convention and, when none reproduces the
header, reported as not comparable rather than as a disagreement.

Area, power and delay in the header come from EvoApprox's synthesis flow; they are kept as
published figures and never reported as disagreements. EvoApprox8b's HD (total Hamming
distance of the output word over all pairs) is recomputed and compared.

A directory import goes on past a bad file: each failure is reported with its path and line,
and a circuit is returned only when everything about it succeeded (the caller stores the
results atomically).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .metrics import ErrorMetrics, error_metrics, exact_table
from .netlist import Netlist, NetlistError
from .simulate import simulate
from .verilog import VerilogError, normalize_ports, read_verilog

LIB_LITE = "EvoApproxLib"
LIB_8B = "EvoApprox8b"


# ---------------------------------------------------------------------------------------
# Headers


@dataclass(frozen=True)
class HeaderField:
    """One published figure: our key, value in our unit, and the half-unit of its last digit."""

    key: str
    value: float
    tolerance: float
    raw_key: str
    raw_value: str
    unit: str
    line: int


@dataclass(frozen=True)
class Header:
    """The parsed header of one EvoApprox file."""

    fields: dict[str, HeaderField]
    raw: dict[str, str]  # every `KEY = VALUE` line, text as printed (first occurrence)
    style: str  # "lite", "8b" or "none"

    @property
    def values(self) -> dict[str, float]:
        """Published figures by our key (units in the key names)."""
        return {k: f.value for k, f in self.fields.items()}

    def merged(self, other: "Header") -> "Header":
        """This header completed by the fields `other` has and this one lacks."""
        fields = dict(other.fields)
        fields.update(self.fields)
        raw = dict(other.raw)
        raw.update(self.raw)
        style = self.style if self.style != "none" else other.style
        return Header(fields, raw, style)


# (normalized key text, unit text or None) -> (our key, scale to our unit)
_LITE_KEYS = {
    "MAE%": ("mae_pct", 1.0), "MAE": ("mae", 1.0), "WCE%": ("wce_pct", 1.0), "WCE": ("wce", 1.0),
    "WCRE%": ("wcre_pct", 1.0), "EP%": ("ep_pct", 1.0), "MRE%": ("mre_pct", 1.0), "MSE": ("mse", 1.0),
    "PDK45_PWR": ("power_mw", None), "PDK45_AREA": ("area_um2", 1.0), "PDK45_DELAY": ("delay_ns", 1.0),
    "FPGA_POWER": ("fpga_power", 1.0), "FPGA_DELAY": ("fpga_delay", 1.0), "FPGA_LUT": ("fpga_luts", 1.0),
}
_8B_KEYS = {
    "AREA (180)": ("area_180nm_um2", 1.0), "DELAY (180)": ("delay_180nm_ns", 1.0),
    "POWER (180)": ("power_180nm_mw", None), "AREA (45)": ("area_um2", 1.0),
    "DELAY (45)": ("delay_ns", 1.0), "POWER (45)": ("power_mw", None),
    "NODES": ("nodes", 1.0), "HD": ("hd", 1.0), "MAE": ("mae", 1.0), "MSE": ("mse", 1.0),
    "MRE": ("mre_pct", 1.0), "WCE": ("wce", 1.0), "WCRE": ("wcre_pct", 1.0), "EP": ("ep_pct", 1.0),
    "VAE": ("vae", 1.0),
}
_POWER_UNITS = {"mw": 1.0, "uw": 1e-3, "µw": 1e-3, "nw": 1e-6, "w": 1e3}

_HEADER_RE = re.compile(
    r"^\s*//+\s*(?P<key>[A-Za-z][A-Za-z0-9_% ()]*?)\s*=\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-z%µ]+[0-9]?)?\s*$"
)
_TEXT_RE = re.compile(r"^\s*//+\s*(?P<key>Library|Circuit)\s*=\s*(?P<value>\S.*?)\s*$")


def _decimals_tolerance(text: str) -> float:
    """Half a unit of the last printed digit of a number, e.g. '0.89' -> 0.005, '47164.981e4' -> 5."""
    m = re.match(r"[-+]?(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?$", text)
    decimals = len(m.group(2) or "")
    exponent = int(m.group(3) or 0)
    return 0.5 * 10.0 ** (exponent - decimals)


def parse_header(text: str) -> Header:
    """Published figures from EvoApproxLib LITE (`// K = V unit`) or EvoApprox8b (`/// K = V`) lines."""
    fields: dict[str, HeaderField] = {}
    raw: dict[str, str] = {}
    style = "none"
    for lineno, line in enumerate(text.splitlines(), 1):
        tm = _TEXT_RE.match(line)
        if tm:
            raw.setdefault(tm.group("key"), tm.group("value"))
            if tm.group("key") == "Library" and "8b" in tm.group("value").lower():
                style = "8b"
            continue
        m = _HEADER_RE.match(line)
        if not m:
            continue
        key_text = " ".join(m.group("key").split())
        value_text = m.group("value")
        unit = m.group("unit") or ""
        raw.setdefault(key_text, f"{value_text} {unit}".strip())
        norm = key_text.upper()
        mapping = _LITE_KEYS.get(norm) or _8B_KEYS.get(norm)
        if mapping is None:
            continue
        ours, scale = mapping
        if "(" in norm:
            style = "8b"
        elif style == "none" and (norm.endswith("%") or norm.startswith("PDK45")):
            style = "lite"
        if ours in fields:
            continue
        if scale is None:  # a power: unit given, or uW for EvoApprox8b, mW for LITE
            u = unit.lower()
            if u in _POWER_UNITS:
                scale = _POWER_UNITS[u]
            else:
                scale = 1e-3 if norm.startswith("POWER") else 1.0
        # round away the float noise of the unit conversion (141.50 uW -> 0.1415 mW)
        value = float(f"{float(value_text) * scale:.12g}")
        tol = float(f"{_decimals_tolerance(value_text) * scale:.12g}")
        fields[ours] = HeaderField(ours, value, tol, key_text, value_text, unit, lineno)
    return Header(fields, raw, style)


# ---------------------------------------------------------------------------------------
# Metric comparison

# How each library averages the relative error (verified on real files; see the module doc).
RELATIVE_ERROR_CONVENTIONS = {
    LIB_LITE: "MRE over pairs with a non-zero exact product (our definition)",
    LIB_8B: "MRE over all 65,536 pairs (relative error 0 where the exact product is 0)",
}

NOT_RECOMPUTED = {
    "power_mw": "synthesis figure of EvoApprox's flow (ours comes from the cost table)",
    "area_um2": "synthesis figure of EvoApprox's flow (ours comes from the cost table)",
    "delay_ns": "synthesis figure of EvoApprox's flow (ours comes from static timing)",
    "power_180nm_mw": "180 nm synthesis figure", "area_180nm_um2": "180 nm synthesis figure",
    "delay_180nm_ns": "180 nm synthesis figure", "nodes": "their gate count (compared with ours in `notes`)",
    "fpga_power": "FPGA figure", "fpga_delay": "FPGA figure", "fpga_luts": "FPGA figure",
    "vae": "variance of the absolute error; definition not published",
}


@dataclass(frozen=True)
class Disagreement:
    """A published figure our recomputation does not reproduce within its printed rounding."""

    key: str
    published: float
    ours: float
    tolerance: float
    note: str = ""

    def __str__(self) -> str:
        s = f"{self.key}: published {self.published:g} (+-{self.tolerance:g}), recomputed {self.ours:.6g}"
        return f"{s}; {self.note}" if self.note else s


@dataclass(frozen=True)
class Comparison:
    """The outcome of checking a header against a recomputed table."""

    agreed: dict[str, float]  # key -> our value, within the printed rounding
    disagreements: tuple[Disagreement, ...]
    not_compared: dict[str, str]  # key -> why it is not compared


def relative_error_candidates(table: np.ndarray, signed: bool) -> dict[str, dict[str, float]]:
    """MRE% / WCRE% under each plausible treatment of exact-zero products."""
    exact = exact_table(signed)
    err = np.abs(np.asarray(table).astype(np.int64) - exact).astype(np.float64)
    nz = exact != 0
    rel_excl = np.where(nz, err / np.maximum(np.abs(exact), 1), 0.0)
    rel_max1 = err / np.maximum(np.abs(exact), 1)
    n_nz = int(nz.sum())
    return {
        "mre_pct": {
            "nonzero": float(rel_excl.sum() / n_nz * 100),
            "nonzero_count_max1": float(rel_max1.sum() / n_nz * 100),
            "all_pairs": float(rel_excl.mean() * 100),
            "all_pairs_max1": float(rel_max1.mean() * 100),
        },
        "wcre_pct": {"nonzero": float(rel_excl.max() * 100), "max1": float(rel_max1.max() * 100)},
    }


def hamming_distance_total(table: np.ndarray, signed: bool) -> int:
    """Total number of differing output bits (16-bit words) between the table and the exact products."""
    t = np.asarray(table).astype(np.int64) & 0xFFFF
    x = exact_table(signed) & 0xFFFF
    diff = (t ^ x).astype(np.uint16)
    return int(np.unpackbits(diff.view(np.uint8)).sum())


def compare_with_header(table: np.ndarray, signed: bool, header: Header, library: str,
                        metrics: ErrorMetrics | None = None) -> Comparison:
    """Check each published error figure against the recomputed table, within its rounding."""
    m = metrics or error_metrics(table, signed)
    exact = exact_table(signed)
    zero_err = bool(((exact == 0) & (np.asarray(table).astype(np.int64) != 0)).any())
    cands = relative_error_candidates(table, signed)
    primary_mre = "all_pairs" if library == LIB_8B else "nonzero"
    plausible_mre = ("all_pairs", "all_pairs_max1") if library == LIB_8B else ("nonzero", "nonzero_count_max1")
    ours = {
        "mae": m.mae, "mae_pct": m.mae_pct, "wce": float(m.wce), "wce_pct": m.wce_pct,
        "ep_pct": m.ep_pct, "mse": m.mse,
        "mre_pct": cands["mre_pct"][primary_mre], "wcre_pct": cands["wcre_pct"]["nonzero"],
        "hd": float(hamming_distance_total(table, signed)),
    }
    agreed: dict[str, float] = {}
    disagreements: list[Disagreement] = []
    not_compared: dict[str, str] = {}
    for key, f in header.fields.items():
        if key not in ours:
            not_compared[key] = NOT_RECOMPUTED.get(key, "no recomputed counterpart")
            continue
        # Half a unit of the last digit, plus float noise (the figures are printed from doubles).
        tol = f.tolerance * (1 + 1e-9) + 1e-9 * abs(f.value)
        value = ours[key]
        if abs(value - f.value) <= tol:
            agreed[key] = value
            continue
        if zero_err and key in ("mre_pct", "wcre_pct"):
            names = plausible_mre if key == "mre_pct" else ("nonzero", "max1")
            vals = {n: cands[key][n] for n in names}
            hit = [n for n, v in vals.items() if abs(v - f.value) <= tol]
            if hit:
                agreed[key] = vals[hit[0]]
            else:
                shown = ", ".join(f"{n} {v:.6g}" for n, v in vals.items())
                not_compared[key] = (f"the table has non-zero products where the exact product is 0, and "
                                     f"{library} does not define their relative error; published "
                                     f"{f.raw_value}, candidates: {shown}")
            continue
        note = ""
        if key == "mre_pct":
            note = RELATIVE_ERROR_CONVENTIONS.get(library, "")
        disagreements.append(Disagreement(key, f.value, value, f.tolerance, note))
    return Comparison(agreed, tuple(disagreements), not_compared)


# ---------------------------------------------------------------------------------------
# Records and the directory walk


@dataclass(frozen=True, eq=False)
class EvoApproxRecord:
    """One imported circuit: netlist, simulated table, published figures and the comparison."""

    name: str
    library: str
    version: str
    signed: bool
    netlist: Netlist = field(repr=False)
    table: np.ndarray = field(repr=False)
    published: dict[str, float]
    disagreements: tuple[Disagreement, ...]
    path: str
    header: Header = field(repr=False)
    not_compared: dict[str, str] = field(default_factory=dict)
    agreed: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    multiplier: object | None = field(default=None, repr=False)  # rtl_models.multiplier.Multiplier


@dataclass(frozen=True)
class ImportFailure:
    """A file that could not be imported: where and why."""

    path: str
    line: int | None
    message: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line is not None else f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ImportResult:
    """Successfully imported circuits and the failures, in walk order."""

    records: tuple[EvoApproxRecord, ...]
    failures: tuple[ImportFailure, ...]
    characterized: bool  # whether `multipliers` holds characterized Multiplier records

    @property
    def multipliers(self) -> list:
        """The characterized `Multiplier` records (empty when characterization is unavailable)."""
        return [r.multiplier for r in self.records if r.multiplier is not None]


_SUFFIXES = ("_pdk45", "_gen")


@dataclass(frozen=True)
class Circuit:
    """One circuit found on disk: its Verilog candidates (preferred first) and C file."""

    name: str
    library: str
    signed: bool
    verilog: tuple[Path, ...]
    c_file: Path | None
    root: Path  # checkout root (for the version)


def _circuit_name(path: Path) -> str:
    stem = path.stem
    for suf in _SUFFIXES:
        if stem.endswith(suf):
            return stem[: -len(suf)]
    return stem


def _classify_dir(d: Path) -> tuple[str, bool, Path] | None:
    """(library, signed, checkout root) for a folder holding 8x8 multipliers, else None."""
    parts = d.parts
    if d.name == "multipliers_8":
        return LIB_8B, False, d.parent
    if d.name.startswith("pareto_pwr_") and len(parts) >= 3 and parts[-2] in ("8x8_unsigned", "8x8_signed") \
            and parts[-3] in ("multiplers", "multipliers"):
        return LIB_LITE, parts[-2] == "8x8_signed", d.parent.parent.parent
    return None


def find_circuits(root: str | Path) -> list[Circuit]:
    """Every 8x8 multiplier circuit under an EvoApproxLib LITE or EvoApprox8b checkout (or a part of one)."""
    root = Path(root)
    dirs: list[Path] = []
    for here, subdirs, _ in os.walk(root):
        subdirs[:] = sorted(x for x in subdirs if not x.startswith("."))  # skip .git and the like
        d = Path(here)
        if _classify_dir(d.resolve()) is not None:
            dirs.append(d)
    dirs.sort()
    circuits: list[Circuit] = []
    seen: set[tuple[str, str]] = set()
    for d in dirs:
        library, signed, croot = _classify_dir(d.resolve())
        names: dict[str, list[Path]] = {}
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix in (".v", ".c"):
                names.setdefault(_circuit_name(f), []).append(f)
        for name, files in sorted(names.items()):
            if (library, name) in seen:  # the same circuit sits in several pareto folders
                continue
            vs = [d / f"{name}{suf}.v" for suf in ("", "_pdk45", "_gen")]
            vs = tuple(v for v in vs if v in files)
            c = d / f"{name}.c"
            if not vs:
                continue  # a C model alone has no netlist to import
            seen.add((library, name))
            circuits.append(Circuit(name, library, signed or name.startswith("mul8s"), vs,
                                    c if c in files else None, croot))
    return circuits


def checkout_version(root: str | Path) -> str:
    """A checkout's version: VERSION file, a version in its README, its git commit, else 'unknown'."""
    root = Path(root)
    v = root / "VERSION"
    if v.is_file():
        text = v.read_text(errors="replace").strip()
        if text:
            return text.splitlines()[0].strip()
    for readme in ("README.md", "README", "README.txt"):
        p = root / readme
        if p.is_file():
            m = re.search(r"\bversion\s*[:=]?\s*v?(\d+(?:\.\d+)+)", p.read_text(errors="replace"), re.I)
            if m:
                return m.group(1)
    head = root / ".git" / "HEAD"
    if head.is_file():
        ref = head.read_text().strip()
        sha = ref
        if ref.startswith("ref:"):
            refpath = root / ".git" / ref.split(None, 1)[1]
            sha = refpath.read_text().strip() if refpath.is_file() else ""
            if not sha:
                packed = root / ".git" / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + ref.split(None, 1)[1]):
                            sha = line.split()[0]
        if re.fullmatch(r"[0-9a-f]{40}", sha):
            return f"git-{sha[:12]}"
    return "unknown"


def import_circuit(circuit: Circuit, version: str, *, characterize_fn: Callable | None = None
                   ) -> tuple[EvoApproxRecord | None, list[ImportFailure]]:
    """Read, simulate and check one circuit: (record or None, failures of the files tried).

    The preferred Verilog file is read first; if it fails, the circuit's other Verilog files
    (``_pdk45.v``, ``_gen.v``) are tried, and the failed file is still reported.
    """
    failures: list[ImportFailure] = []
    c_header = None
    if circuit.c_file is not None:
        c_header = parse_header(circuit.c_file.read_text(encoding="utf-8", errors="replace"))
    for path in circuit.verilog:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            netlist = normalize_ports(read_verilog(text, path=str(path)))
            header = parse_header(text)
            if c_header is not None:
                header = header.merged(c_header)
            rec = _finish_record(circuit.name, circuit.library, version, circuit.signed, netlist, header,
                                 str(path), characterize_fn)
        except Exception as exc:  # noqa: BLE001 - every failure is reported per file
            failures.append(_failure(path, exc, circuit.name))
            continue
        if failures:
            note = f"read {path.name} because {failures[0]}"
            rec = dataclasses.replace(rec, notes=rec.notes + (note,))
        return rec, failures
    return None, failures


def _finish_record(name, library, version, signed, netlist, header, path, characterize_fn) -> EvoApproxRecord:
    published = header.values
    mult = None
    if characterize_fn is not None:  # one simulation serves the table, the metrics and the power
        mult = characterize_fn(netlist, name=name, library=library, version=version, signed=signed,
                               family="evoapprox", params={}, source=path, published=published)
        table, metrics = mult.table, mult.metrics
    else:
        table = simulate(netlist, signed=signed).table
        metrics = error_metrics(table, signed)
    cmp = compare_with_header(table, signed, header, library, metrics)
    if mult is not None and cmp.disagreements:
        mult = dataclasses.replace(mult, disagreements=tuple(str(d) for d in cmp.disagreements))
    notes = []
    if "nodes" in header.fields:
        notes.append(f"published Nodes = {header.fields['nodes'].raw_value}, "
                     f"our netlist has {len(netlist.cells)} cells")
    return EvoApproxRecord(name=name, library=library, version=version, signed=signed, netlist=netlist,
                           table=table, published=published, disagreements=cmp.disagreements, path=path,
                           header=header, not_compared=cmp.not_compared, agreed=cmp.agreed, notes=tuple(notes),
                           multiplier=mult)


def _characterize_fn() -> Callable | None:
    try:
        from .characterize import characterize
    except ImportError:  # characterization not available: return raw records
        return None
    return characterize


def _failure(path: Path, exc: Exception, name: str) -> ImportFailure:
    if isinstance(exc, VerilogError):
        return ImportFailure(exc.path, exc.line, exc.reason, name)
    if isinstance(exc, (NetlistError, ValueError, OSError, UnicodeError)):
        return ImportFailure(str(path), None, str(exc), name)
    # Anything else is still this file's failure: report it with its type and go on.
    return ImportFailure(str(path), None, f"{type(exc).__name__}: {exc}", name)


def import_directory(root: str | Path, *, characterize: bool = True, progress: bool | Callable = False) -> ImportResult:
    """Import every 8x8 multiplier under a checkout; a bad file is reported and skipped."""
    root = Path(root)
    circuits = find_circuits(root)
    fn = _characterize_fn() if characterize else None
    if not circuits:
        msg = ("no EvoApprox 8x8 multipliers found (expected multiplers/8x8_unsigned|8x8_signed/"
               "pareto_pwr_*/ or multipliers_8/ with .v files)")
        return ImportResult((), (ImportFailure(str(root), None, msg),), fn is not None)
    versions: dict[Path, str] = {}
    records: list[EvoApproxRecord] = []
    failures: list[ImportFailure] = []
    it = circuits
    if progress is True:
        from rich.progress import track

        it = track(circuits, description="importing", transient=True)
    for k, c in enumerate(it):
        if callable(progress):
            progress(k, len(circuits), c.name)
        version = versions.setdefault(c.root, checkout_version(c.root))
        rec, failed = import_circuit(c, version, characterize_fn=fn)
        failures.extend(failed)
        if rec is not None:
            records.append(rec)
    return ImportResult(tuple(records), tuple(failures), fn is not None)


def import_file(path: str | Path, *, signed: bool | None = None, library: str | None = None,
                version: str = "unknown", characterize: bool = True) -> ImportResult:
    """Import one Verilog file (signedness from `signed`, else from the name/folder, mul8s = signed)."""
    path = Path(path)
    fn = _characterize_fn() if characterize else None
    name = _circuit_name(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        header = parse_header(text)
        c = path.with_name(f"{name}.c")
        if c.is_file() and c != path:
            header = header.merged(parse_header(c.read_text(encoding="utf-8", errors="replace")))
        cls = _classify_dir(path.parent.resolve())
        if library is None:
            library = cls[0] if cls else (LIB_8B if header.style == "8b" else LIB_LITE)
        if signed is None:
            signed = bool(cls and cls[1]) or name.startswith("mul8s")
        netlist = normalize_ports(read_verilog(text, path=str(path)))
        rec = _finish_record(name, library, version, signed, netlist, header, str(path), fn)
        return ImportResult((rec,), (), fn is not None)
    except Exception as exc:  # noqa: BLE001 - every failure is reported per file
        return ImportResult((), (_failure(path, exc, name),), fn is not None)


def import_path(path: str | Path, *, progress: bool | Callable = False, characterize: bool = True) -> ImportResult:
    """Import a checkout, a folder of one, or a single .v file."""
    path = Path(path)
    if path.is_file():
        return import_file(path, characterize=characterize)
    return import_directory(path, characterize=characterize, progress=progress)


def published_summary(records) -> dict[str, int]:
    """Counts of agreeing / disagreeing / not compared figures over records (for reports)."""
    out = {"agreed": 0, "disagreed": 0, "not_compared": 0}
    for r in records:
        out["agreed"] += len(r.agreed)
        out["disagreed"] += len(r.disagreements)
        out["not_compared"] += len(r.not_compared)
    return out


__all__ = [
    "Circuit", "Comparison", "Disagreement", "EvoApproxRecord", "Header", "HeaderField", "ImportFailure",
    "ImportResult", "LIB_8B", "LIB_LITE", "RELATIVE_ERROR_CONVENTIONS", "checkout_version",
    "compare_with_header", "find_circuits", "hamming_distance_total", "import_circuit", "import_directory",
    "import_file", "import_path", "parse_header", "published_summary", "relative_error_candidates",
]
