"""EvoApprox importer: header parsing, metric comparison, directory walk with a bad file."""

from __future__ import annotations

import numpy as np
import pytest

from rtl_models.evoapprox import (
    LIB_8B,
    LIB_LITE,
    checkout_version,
    compare_with_header,
    find_circuits,
    hamming_distance_total,
    import_directory,
    import_file,
    import_path,
    parse_header,
    relative_error_candidates,
)
from rtl_models.metrics import error_metrics, exact_table
from rtl_models.simulate import simulate
from rtl_models.verilog import read_verilog

# -- circuits the tests write themselves ----------------------------------------------------------


def unsigned_sum(drop_low: int = 0, force_lsb: bool = False) -> str:
    """Body of an 8x8 unsigned multiplier (vector +), low bits dropped or bit 0 forced to 1."""
    lines = ["  wire [15:0] S;"]
    terms = []
    for j in range(8):
        lines.append(f"  wire [15:0] p{j};")
        parts = [f"{8 - j}'b0", f"A & {{8{{B[{j}]}}}}"] + ([f"{j}'b0"] if j else [])
        lines.append(f"  assign p{j} = {{{', '.join(parts)}}};")
        terms.append(f"p{j}")
    lines.append(f"  assign S = {' + '.join(terms)};")
    if drop_low:
        lines.append(f"  assign O = {{S[15:{drop_low}], {drop_low}'b0}};")
    elif force_lsb:
        lines.append("  assign O = {S[15:1], 1'b1};")
    else:
        lines.append("  assign O = S;")
    return "\n".join(lines)


def signed_sum(drop_low: int = 0) -> str:
    """Body of an 8x8 signed multiplier: sign-extended rows, the B[7] row negated (~x + 1)."""
    lines = ["  wire [15:0] S, sA;", "  assign sA = {{8{A[7]}}, A};"]
    terms = []
    for j in range(7):
        lines.append(f"  wire [15:0] p{j};")
        shifted = f"{{sA[{15 - j}:0], {j}'b0}}" if j else "sA"
        lines.append(f"  assign p{j} = {shifted} & {{16{{B[{j}]}}}};")
        terms.append(f"p{j}")
    lines.append("  wire [15:0] n7;")
    lines.append("  assign n7 = ~{sA[8:0], 7'b0} & {16{B[7]}};")
    terms += ["n7", "{15'b0, B[7]}"]
    lines.append(f"  assign S = {' + '.join(terms)};")
    lines.append(f"  assign O = {{S[15:{drop_low}], {drop_low}'b0}};" if drop_low else "  assign O = S;")
    return "\n".join(lines)


def module(name: str, body: str) -> str:
    return f"module {name} ( A, B, O );\n  input [7:0] A;\n  input [7:0] B;\n  output [15:0] O;\n{body}\nendmodule\n"


def table_for(src: str, signed: bool) -> np.ndarray:
    return simulate(read_verilog(src), signed=signed).table


def lite_header(table: np.ndarray, signed: bool, **override) -> str:
    """A LITE header as EvoApproxLib prints it (MRE over non-zero exact products)."""
    m = error_metrics(table, signed)
    v = {
        "MAE%": f"{m.mae_pct:.2f} %", "MAE": f"{m.mae:.0f} ", "WCE%": f"{m.wce_pct:.2f} %", "WCE": f"{m.wce} ",
        "WCRE%": f"{m.wcre_pct:.2f} %", "EP%": f"{m.ep_pct:.2f} %", "MRE%": f"{m.mre_pct:.2f} %",
        "MSE": f"{m.mse:.0f} ", "PDK45_PWR": "0.084 mW", "PDK45_AREA": "214.5 um2", "PDK45_DELAY": "0.95 ns",
    }
    v.update(override)
    return "".join(f"// {k} = {val}\n" for k, val in v.items())


def e8b_header(table: np.ndarray, prefix: str = "//", **override) -> str:
    """An EvoApprox8b header (MRE averaged over all pairs, powers in uW)."""
    m = error_metrics(table, False)
    c = relative_error_candidates(table, False)
    v = {
        "Library": "EvoApprox8b", "Circuit": "mul8_100", "Area   (180)": "5034", "Delay  (180)": "2.300",
        "Power  (180)": "1667.00", "Area   (45)": "375", "Delay  (45)": "0.880", "Power  (45)": "141.50",
        "Nodes": "104", "HD": f"{hamming_distance_total(table, False)}", "MAE": f"{m.mae:.5f}",
        "MSE": f"{m.mse:.5f}", "MRE": f"{c['mre_pct']['all_pairs']:.2f} %", "WCE": f"{m.wce}",
        "WCRE": f"{m.wcre_pct:.0f} %", "EP": f"{m.ep_pct:.1f} %",
    }
    v.update(override)
    return "".join(f"{prefix}  {k} = {val}\n" for k, val in v.items())


# -- headers --------------------------------------------------------------------------------------


def test_parse_lite_header_units_and_rounding():
    text = """/***
* This code is a part of EvoApproxLib library
***/
// MAE% = 24.81 %
// MAE = 16256 
// WCE% = 99.22 %
// WCE = 65025 
// WCRE% = 100.00 %
// EP% = 99.22 %
// MRE% = 100.00 %
// MSE = 47164.981e4 
// PDK45_PWR = 0.425 mW
// PDK45_AREA = 729.8 um2
// PDK45_DELAY = 1.48 ns
//Broken Array Multiplier Signed(bw=8,v=3,h=3)
module mul8u_ZERO ( A, B, O );
"""
    h = parse_header(text)
    assert h.style == "lite"
    v = h.values
    assert v == {"mae_pct": 24.81, "mae": 16256, "wce_pct": 99.22, "wce": 65025, "wcre_pct": 100.0,
                 "ep_pct": 99.22, "mre_pct": 100.0, "mse": 471649810.0, "power_mw": 0.425,
                 "area_um2": 729.8, "delay_ns": 1.48}
    assert h.fields["mse"].tolerance == pytest.approx(5.0)  # half a unit of 0.001e4
    assert h.fields["mae_pct"].tolerance == pytest.approx(0.005)
    assert h.fields["mae"].tolerance == pytest.approx(0.5)
    assert h.fields["power_mw"].unit == "mW" and h.fields["area_um2"].unit == "um2"


def test_parse_8b_header_c_style_power_in_uW():
    text = "/// Approximate function mul8_100\n" + e8b_header(np.asarray(exact_table(False), dtype=np.uint16),
                                                            prefix="///") + "uint16_t mul8_100(uint8_t a, uint8_t b)\n"
    h = parse_header(text)
    assert h.style == "8b"
    v = h.values
    assert v["power_mw"] == pytest.approx(0.1415) and h.fields["power_mw"].tolerance == pytest.approx(5e-6)
    assert v["power_180nm_mw"] == pytest.approx(1.667)
    assert v["area_um2"] == 375 and v["delay_ns"] == 0.88 and v["area_180nm_um2"] == 5034
    assert v["nodes"] == 104 and v["hd"] == 0 and v["mre_pct"] == 0 and v["ep_pct"] == 0
    assert h.fields["ep_pct"].tolerance == pytest.approx(0.05)
    assert h.raw["Library"] == "EvoApprox8b"


# -- comparison -------------------------------------------------------------------------------------


def test_comparison_agrees_within_printed_rounding_and_lists_disagreements():
    table = table_for(module("mul8u_TRC", unsigned_sum(drop_low=4)), signed=False)
    m = error_metrics(table, False)
    assert m.mae > 0 and m.mre_pct > 0
    h = parse_header(lite_header(table, False))
    cmp = compare_with_header(table, False, h, LIB_LITE)
    assert cmp.disagreements == ()
    assert set(cmp.agreed) == {"mae", "mae_pct", "wce", "wce_pct", "wcre_pct", "ep_pct", "mre_pct", "mse"}
    assert set(cmp.not_compared) == {"power_mw", "area_um2", "delay_ns"}  # synthesis figures
    bad = parse_header(lite_header(table, False, MAE=f"{m.mae + 2:.0f} ", **{"EP%": "12.00 %"}))
    cmp = compare_with_header(table, False, bad, LIB_LITE)
    assert {d.key for d in cmp.disagreements} == {"mae", "ep_pct"}
    d = next(d for d in cmp.disagreements if d.key == "mae")
    assert d.published == round(m.mae) + 2 and d.ours == pytest.approx(m.mae) and d.tolerance == 0.5
    assert "mae: published" in str(d)


def test_8b_mre_is_averaged_over_all_pairs():
    table = table_for(module("mul8_100", unsigned_sum(drop_low=8)), signed=False)
    h = parse_header(e8b_header(table))
    cmp = compare_with_header(table, False, h, LIB_8B)
    assert cmp.disagreements == ()
    assert {"mre_pct", "hd", "mae", "mse", "wce", "wcre_pct", "ep_pct"} <= set(cmp.agreed)
    # the same header read as LITE (MRE over non-zero products only) does not agree
    lite = compare_with_header(table, False, h, LIB_LITE)
    assert [d.key for d in lite.disagreements] == ["mre_pct"]


def test_exact_zero_products_make_relative_errors_ambiguous_not_disagreeing():
    table = table_for(module("mul8u_BIAS", unsigned_sum(force_lsb=True)), signed=False)
    cands = relative_error_candidates(table, False)
    assert cands["wcre_pct"]["max1"] == pytest.approx(100.0 * 1)  # 0 -> 1 with a denominator of 1
    # a header following one plausible convention agrees ...
    h = parse_header(lite_header(table, False, **{"MRE%": f"{cands['mre_pct']['nonzero_count_max1']:.2f} %"}))
    cmp = compare_with_header(table, False, h, LIB_LITE)
    assert "mre_pct" in cmp.agreed and not cmp.disagreements
    # ... and one following none is "not comparable", not a disagreement
    h = parse_header(lite_header(table, False, **{"MRE%": "77.00 %", "WCRE%": "12345.00 %"}))
    cmp = compare_with_header(table, False, h, LIB_LITE)
    assert not cmp.disagreements
    assert "exact product is 0" in cmp.not_compared["mre_pct"] and "wcre_pct" in cmp.not_compared


# -- directory import ---------------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("evo")
    lite = root / "evoapproxlib"
    write(lite / "VERSION", "2.1\n")
    u = lite / "multiplers" / "8x8_unsigned"
    trc_src = module("mul8u_TRC", unsigned_sum(drop_low=4))
    trc = table_for(trc_src, signed=False)
    banner = "/***\n* EvoApproxLib\n***/\n"
    write(u / "pareto_pwr_mae" / "mul8u_TRC.v", banner + lite_header(trc, False) + "\n" + trc_src)
    write(u / "pareto_pwr_mae" / "mul8u_TRC.c", lite_header(trc, False) + "#include <stdint.h>\n")
    write(u / "pareto_pwr_mre" / "mul8u_TRC.v", lite_header(trc, False) + trc_src)  # same circuit again
    bad = module("mul8u_BAD", "  wire x;\n  assign x = A[0] &;\n  assign O = {15'b0, x};")
    write(u / "pareto_pwr_mae" / "mul8u_BAD.v", "// MAE% = 0.00 %\n" + bad)  # error on line 7
    bias_src = module("mul8u_BIAS", unsigned_sum(force_lsb=True))
    bias = table_for(bias_src, signed=False)
    write(u / "pareto_pwr_ep" / "mul8u_BIAS.v", lite_header(bias, False, MAE="5 ") + bias_src)  # wrong MAE
    # NAME.v broken, NAME_pdk45.v fine: imported from the second, the first still reported
    write(u / "pareto_pwr_ep" / "mul8u_ALT.v", module("mul8u_ALT", "  assign O = {A, B} +;"))
    write(u / "pareto_pwr_ep" / "mul8u_ALT_pdk45.v", module("mul8u_ALT", unsigned_sum()))
    s_src = module("mul8s_TRC", signed_sum(drop_low=2))
    s_table = table_for(s_src, signed=True)
    write(lite / "multiplers" / "8x8_signed" / "pareto_pwr_mae" / "mul8s_TRC.v", lite_header(s_table, True) + s_src)
    write(lite / "multiplers" / "16x16_unsigned" / "pareto_pwr_mae" / "mul16u_X.v", "this is not read")
    e8b = root / "evoapprox8b"
    write(e8b / ".git" / "HEAD", "ref: refs/heads/master\n")
    write(e8b / ".git" / "refs" / "heads" / "master", "0123456789abcdef0123456789abcdef01234567\n")
    src8 = module("mul8_100", unsigned_sum(drop_low=5))
    t8 = table_for(src8, signed=False)
    write(e8b / "multipliers_8" / "mul8_100.v", e8b_header(t8) + "\n" + src8)
    write(e8b / "multipliers_8" / "mul8_100.c", "/// Approximate function mul8_100\n" + e8b_header(t8, prefix="///"))
    write(e8b / "adders_8" / "add8_000.v", "not a multiplier")
    return root, lite, e8b


def test_find_circuits_walks_only_8x8_multiplier_folders(checkouts):
    root, lite, e8b = checkouts
    found = {(c.library, c.name, c.signed) for c in find_circuits(root)}
    assert found == {(LIB_LITE, "mul8u_TRC", False), (LIB_LITE, "mul8u_BAD", False),
                     (LIB_LITE, "mul8u_BIAS", False), (LIB_LITE, "mul8u_ALT", False),
                     (LIB_LITE, "mul8s_TRC", True), (LIB_8B, "mul8_100", False)}
    assert checkout_version(lite) == "2.1" and checkout_version(e8b) == "git-0123456789ab"
    assert checkout_version(root) == "unknown"


def test_directory_import_goes_past_a_bad_file(checkouts):
    root, lite, _ = checkouts
    res = import_directory(lite)
    by_name = {r.name: r for r in res.records}
    assert set(by_name) == {"mul8u_TRC", "mul8u_BIAS", "mul8u_ALT", "mul8s_TRC"}
    fails = {f.name: f for f in res.failures}
    assert set(fails) == {"mul8u_BAD", "mul8u_ALT"}
    assert fails["mul8u_BAD"].path.endswith("mul8u_BAD.v") and fails["mul8u_BAD"].line == 7
    assert "expected an expression" in fails["mul8u_BAD"].message
    assert str(fails["mul8u_BAD"]).startswith(fails["mul8u_BAD"].path + ":7:")
    assert fails["mul8u_ALT"].path.endswith("mul8u_ALT.v")
    alt = by_name["mul8u_ALT"]
    assert alt.path.endswith("mul8u_ALT_pdk45.v") and "mul8u_ALT.v" in alt.notes[0]
    trc = by_name["mul8u_TRC"]
    assert trc.library == LIB_LITE and trc.version == "2.1" and not trc.signed
    assert trc.disagreements == () and trc.published["mae"] == round(error_metrics(trc.table, False).mae)
    assert "pareto_pwr_mae" in trc.path  # first folder wins, the duplicate is not imported twice
    assert by_name["mul8s_TRC"].signed and by_name["mul8s_TRC"].table.dtype == np.int16
    assert by_name["mul8s_TRC"].disagreements == ()
    assert [d.key for d in by_name["mul8u_BIAS"].disagreements] == ["mae"]
    exact_s = exact_table(True)
    assert np.abs(by_name["mul8s_TRC"].table.astype(np.int64) - exact_s).max() == 3  # two low bits dropped
    if res.characterized:  # rtl_models.characterize present: Multiplier records with costs
        ms = {m.name: m for m in res.multipliers}
        assert set(ms) == set(by_name)
        assert ms["mul8u_BIAS"].disagreements and all(isinstance(d, str) for d in ms["mul8u_BIAS"].disagreements)
        assert ms["mul8u_TRC"].area_um2 > 0 and ms["mul8u_TRC"].published["power_mw"] == 0.084
        assert ms["mul8s_TRC"].key.startswith("EvoApproxLib/2.1/mul8s_TRC@")


def test_8b_checkout_and_single_file_import(checkouts):
    root, _, e8b = checkouts
    res = import_path(e8b, characterize=False)
    assert not res.failures and not res.multipliers
    (rec,) = res.records
    assert rec.library == LIB_8B and rec.version.startswith("git-") and rec.disagreements == ()
    assert {"mre_pct", "hd", "mae"} <= set(rec.agreed) and rec.published["power_mw"] == pytest.approx(0.1415)
    assert rec.notes and "Nodes" in rec.notes[0]
    one = import_file(e8b / "multipliers_8" / "mul8_100.v", characterize=False)
    assert one.records[0].library == LIB_8B and np.array_equal(one.records[0].table, rec.table)
    bad = import_file(root / "evoapproxlib" / "multiplers" / "8x8_unsigned" / "pareto_pwr_mae" / "mul8u_BAD.v",
                      characterize=False)
    assert not bad.records and bad.failures[0].line == 7
    empty = import_directory(root / "evoapprox8b" / "adders_8", characterize=False)
    assert not empty.records and "no EvoApprox 8x8 multipliers" in empty.failures[0].message
