"""`cosim multipliers` and `cosim demo` through the Typer app."""

import json

import numpy as np
from typer.testing import CliRunner

from nas.cli import app
from rtl_models.designs import load_all
from rtl_models.simulate import simulate
from rtl_models.verilog import read_verilog

runner = CliRunner()

EXACT_V = """// MAE% = 0.00 %
// MAE = 0
// WCE% = 0.00 %
// WCE = 0
// WCRE% = 0.00 %
// EP% = 0.00 %
// MRE% = 0.00 %
// MSE = 0
// PDK45_PWR = 0.391 mW
// PDK45_AREA = 709.6 um2
// PDK45_DELAY = 1.43 ns
module mul8u_TEST ( A, B, O );
  input [7:0] A;
  input [7:0] B;
  output [15:0] O;
  wire [15:0] p0, p1, p2, p3, p4, p5, p6, p7;
  assign p0 = {8'b0, A & {8{B[0]}}};
  assign p1 = {7'b0, A & {8{B[1]}}, 1'b0};
  assign p2 = {6'b0, A & {8{B[2]}}, 2'b0};
  assign p3 = {5'b0, A & {8{B[3]}}, 3'b0};
  assign p4 = {4'b0, A & {8{B[4]}}, 4'b0};
  assign p5 = {3'b0, A & {8{B[5]}}, 5'b0};
  assign p6 = {2'b0, A & {8{B[6]}}, 6'b0};
  assign p7 = {1'b0, A & {8{B[7]}}, 7'b0};
  assign O = p0 + p1 + p2 + p3 + p4 + p5 + p6 + p7;
endmodule
"""

BAD_V = """module mul8u_BAD ( A, B, O );
  input [7:0] A;
  input [7:0] B;
  output [15:0] O;
  assign O = A @ B;
endmodule
"""


def test_list_json_has_records_with_units():
    r = runner.invoke(app, ["multipliers", "list", "--json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)
    assert len(recs) >= 30
    for key in ("name", "library", "version", "sha256", "mre_pct", "wcre_pct", "power_mw", "area_um2",
                "delay_ns", "energy_pj", "mae_pct", "wce_pct", "ep_pct", "mse", "bias"):
        assert key in recs[0]


def test_list_pareto_signed_and_table():
    r = runner.invoke(app, ["multipliers", "list", "--pareto", "mre", "--signed", "--json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)
    assert recs and all(x["signed"] for x in recs)
    powers = [x["power_mw"] for x in recs]
    assert powers == sorted(powers)
    r = runner.invoke(app, ["multipliers", "list", "--pareto", "mre"])
    assert r.exit_code == 0 and "Pareto" in r.stdout
    r = runner.invoke(app, ["multipliers", "list", "--pareto", "nonsense"])
    assert r.exit_code != 0 and "pareto error metric" in r.output


def test_show_writes_heatmap_and_json(tmp_path):
    png = tmp_path / "h.png"
    r = runner.invoke(app, ["multipliers", "show", "mul8u_drum_k4", "--plot", str(png), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["name"] == "mul8u_drum_k4" and rec["heatmap_png"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["multipliers", "show", "mul8u_nope", "--no-plot"])
    assert r.exit_code != 0 and "no multiplier named" in r.output


def test_export_reads_back_to_the_same_table(tmp_path):
    out = tmp_path / "m.v"
    r = runner.invoke(app, ["multipliers", "export", "mul8u_mitchell", "--verilog", str(out)])
    assert r.exit_code == 0, r.output
    spec = load_all()["mul8u_mitchell"]
    np.testing.assert_array_equal(simulate(read_verilog(out)).table, spec.reference_table())


def test_import_goes_past_a_bad_file_and_stores_the_good_one(tmp_path, monkeypatch):
    # a private cache, so the imported design does not leak into other tests' libraries
    monkeypatch.setenv("COSIM_CACHE_DIR", str(tmp_path / "cache"))
    d = tmp_path / "evoapproxlib" / "multiplers" / "8x8_unsigned" / "pareto_pwr_mae"
    d.mkdir(parents=True)
    (d / "mul8u_TEST.v").write_text(EXACT_V)
    (d / "mul8u_BAD.v").write_text(BAD_V)
    r = runner.invoke(app, ["multipliers", "import", str(tmp_path / "evoapproxlib"), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert [m["name"] for m in summary["imported"]] == ["mul8u_TEST"]
    assert len(summary["failed"]) == 1 and "mul8u_BAD.v" in summary["failed"][0]["path"]
    assert summary["failed"][0]["line"] == 5
    r = runner.invoke(app, ["multipliers", "show", "mul8u_TEST", "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["library"] == "EvoApproxLib" and rec["ep_pct"] == 0.0
    assert rec["published"]["power_mw"] == 0.391


def test_import_missing_path_fails_cleanly(tmp_path):
    r = runner.invoke(app, ["multipliers", "import", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "no such file" in r.output


def test_demo_prints_pareto_fronts(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--stages", "multipliers", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Pareto front" in r.stdout
    recs = json.loads((tmp_path / "demo" / "multipliers.json").read_text())
    assert len(recs) >= 30
    assert any((tmp_path / "demo" / "heatmaps").glob("*.png"))


def test_demo_json_is_the_same_data(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--stages", "multipliers", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    front = doc["stages"]["multipliers"]["pareto_power_vs_mre"]
    assert doc["stages"]["multipliers"]["designs"] >= 30 and front["unsigned"] and front["signed"]
    assert any(m["mre_pct"] == 0 for m in front["unsigned"])  # the exact design ends every front


def test_demo_rejects_an_unknown_stage(tmp_path):
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--stages", "multipliers,nas"])
    assert r.exit_code != 0 and "--stages" in r.output and "search" in r.output
    assert not (tmp_path / "demo").exists()
