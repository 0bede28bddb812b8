"""Mapping-trace schema: write/read round trip and validation errors that name the field."""

import json

import numpy as np
import pytest

from mapping.hardware import PRESETS
from mapping.layer import Layer
from mapping.network import Network
from mapping.tiler import fold_schedule
from traces.mapping_trace import ARRAYS, VERSION, MappingTrace, MappingTraceError


def _trace(split="auto"):
    net = Network.chain("t", [Layer("c1", "conv2d", 16, 16, 8, 24, 3, 3, pad_h=1, pad_w=1),
                              Layer("p", "pool", 16, 16, 24, 24, 2, 2, 2, 2, pool_op="max"),
                              Layer("DPc", "depthwise", 8, 8, 24, 24, 3, 3, groups=24),
                              Layer("fc", "linear", 1, 1, 1536, 10)])
    meta, arrays = fold_schedule(net, PRESETS["tpu_v4_like"].with_(rows=8, cols=8), "pipelined", split)
    return MappingTrace(meta, arrays)


def test_round_trip(tmp_path):
    tr = _trace()
    js, npz = tr.write(tmp_path / "run")
    assert js.name == "run.json" and npz.name == "run.npz"
    back = MappingTrace.read(tmp_path / "run.npz")
    assert back.meta == json.loads(js.read_text())
    for k in ARRAYS:
        np.testing.assert_array_equal(back.arrays[k], tr.arrays[k])
    assert back.meta["version"] == VERSION and set(back.meta["arrays"]) == set(ARRAYS)
    f = back.folds(0, 0)
    assert (f["seq"] == np.arange(len(f["seq"]))).all()


def test_k_split_has_reductions():
    tr = _trace("k")
    red = tr.reductions(0)
    assert len(red["bytes"]) == 7 and (red["dst_pod"] == 0).all()


def _broken(tmp_path, edit_meta=None, edit_arrays=None):
    tr = _trace()
    tr.write(tmp_path / "b")
    meta = json.loads((tmp_path / "b.json").read_text())
    with np.load(tmp_path / "b.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    (tmp_path / "b.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "b.npz", **arrays)
    return tmp_path / "b"


@pytest.mark.parametrize("edit_meta,edit_arrays,match", [
    (lambda m: m.update(version=99), None, "version = 99"),
    (lambda m: m.update(schema="x"), None, "schema"),
    (lambda m: m.update(dataflow="rs"), None, "dataflow"),
    (None, lambda a: a.pop("fold_k_stop"), "fold_k_stop"),
    (None, lambda a: a.__setitem__("fold_m_stop", a["fold_m_stop"] + 10_000), r"fold_m_start/stop\[0\]"),
    (None, lambda a: a.__setitem__("fold_seq", np.zeros_like(a["fold_seq"])), r"fold_seq\[1\]"),
    (None, lambda a: a.__setitem__("fold_ifmap_dram_bytes", a["fold_ifmap_dram_bytes"] - 10**9), "fold_ifmap_dram_bytes"),
    (lambda m: m["layers"][0]["pods"][0].update(m=[0, 10**9]), None, r"layers\[0\].pods\[0\].m"),
])
def test_validation_names_the_field(tmp_path, edit_meta, edit_arrays, match):
    path = _broken(tmp_path, edit_meta, edit_arrays)
    with pytest.raises(MappingTraceError, match=match):
        MappingTrace.read(path)


def test_missing_files(tmp_path):
    with pytest.raises(MappingTraceError, match="no such"):
        MappingTrace.read(tmp_path / "nothing")
