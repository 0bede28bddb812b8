"""`cosim estimate` through typer's CliRunner."""

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from nas.cli import app

runner = CliRunner()

TOPO = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
        "conv, 34, 34, 3, 3, 16, 32, 1,\n")
HW = ('preset = "scalesim_google"\nname = "ss32"\nrows = 32\ncols = 32\ndram_bytes_per_cycle = 1e9\n')


def _run(args):
    res = runner.invoke(app, args)
    return res, (res.stdout if hasattr(res, "stdout") else res.output)


def test_topology_and_hw_file_json(tmp_path):
    (tmp_path / "t.csv").write_text(TOPO)
    (tmp_path / "h.toml").write_text(HW)
    res, out = _run(["estimate", "--topology", str(tmp_path / "t.csv"), "--hw", str(tmp_path / "h.toml"),
                     "--json", "--csv", str(tmp_path / "r.csv"), "--trace", str(tmp_path / "tr")])
    assert res.exit_code == 0, res.output
    doc = json.loads(out)
    assert doc["layers"][0]["total_cycles"] == 5589  # the WS 32x32 figure
    tot = doc["total"]
    for key in ("macs", "total_cycles", "latency_s", "mac_energy_pj", "total_energy_pj", "memory_footprint_bytes"):
        assert key in tot
    assert (tmp_path / "r.csv").exists() and (tmp_path / "tr.json").exists() and (tmp_path / "tr.npz").exists()


def test_dataflow_flag_and_table(tmp_path):
    (tmp_path / "t.csv").write_text(TOPO)
    res, out = _run(["estimate", "--topology", str(tmp_path / "t.csv"), "--hw", "edge_16x16", "--dataflow", "os",
                     "--rohnas"])
    assert res.exit_code == 0, res.output
    assert "total" in out and "RoHNAS baseline" in out


@dataclass(frozen=True)
class _Mult:
    name: str
    energy_pj: float


class _Lib:
    def get(self, key):
        if key not in ("exact8", "approx8"):
            raise KeyError(f"no multiplier named {key!r} in the library")
        return _Mult(key, 0.2 if key == "exact8" else 0.05)


def test_multiplier_assignment(tmp_path, monkeypatch):
    from rtl_models import library

    monkeypatch.setattr(library.MultiplierLibrary, "default", classmethod(lambda cls, **kw: _Lib()))
    (tmp_path / "t.csv").write_text(TOPO + "conv2, 32, 32, 3, 3, 32, 8, 1,\n")
    (tmp_path / "a.json").write_text(json.dumps({"*": "exact8", "conv2": "approx8"}))
    res, out = _run(["estimate", "--topology", str(tmp_path / "t.csv"), "--hw", "edge_16x16",
                     "--multipliers", str(tmp_path / "a.json"), "--json"])
    assert res.exit_code == 0, res.output
    layers = json.loads(out)["layers"]
    assert [l["multiplier"] for l in layers] == ["exact8", "approx8"]
    assert layers[1]["mac_energy_pj"] == pytest.approx(layers[1]["macs"] * 0.05)
    (tmp_path / "b.json").write_text(json.dumps({"conv9": "approx8"}))
    res, _ = _run(["estimate", "--topology", str(tmp_path / "t.csv"), "--multipliers", str(tmp_path / "b.json")])
    assert res.exit_code == 2 and "conv9" in res.output
    (tmp_path / "c.json").write_text(json.dumps({"conv": "nope"}))
    res, _ = _run(["estimate", "--topology", str(tmp_path / "t.csv"), "--multipliers", str(tmp_path / "c.json")])
    assert res.exit_code == 2 and "nope" in res.output


@pytest.mark.parametrize("args,match", [
    (["estimate"], "exactly one of"),
    (["estimate", "--model", "lenet5", "--hw", "nowhere"], "unknown hardware"),
    (["estimate", "--model", "lenet5", "--dataflow", "rs"], "--dataflow"),
    (["estimate", "--model", "nosuchnet"], "unknown zoo model"),
])
def test_errors(args, match):
    res, _ = _run(args)
    assert res.exit_code == 2 and match in res.output


def test_zoo_model_json():
    res, out = _run(["estimate", "--model", "lenet5", "--hw", "tpu_v4_like", "--timing", "pipelined", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out)
    assert doc["total"]["macs"] == 416_520 and doc["timing"] == "pipelined"


@pytest.mark.slow
def test_real_library_assignment(tmp_path):
    from rtl_models.library import MultiplierLibrary

    name = MultiplierLibrary.default().names[0]
    (tmp_path / "a.json").write_text(json.dumps({"*": name}))
    res, out = _run(["estimate", "--model", "lenet5", "--hw", "edge_16x16", "--multipliers", str(tmp_path / "a.json"),
                     "--json"])
    assert res.exit_code == 0, res.output
    assert {l["multiplier"] for l in json.loads(out)["layers"] if l["macs"]} == {name}
