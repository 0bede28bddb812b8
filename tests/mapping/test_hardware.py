"""HardwareConfig: presets, TOML round trips, and errors that name the key, value and expectation."""

import pytest

from mapping.hardware import (PRESETS, EnergyTable, HardwareConfig, HardwareConfigError, load_hardware, preset,
                              resolve_hardware, save_hardware)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trip(tmp_path, name):
    hw = preset(name)
    path = tmp_path / f"{name}.toml"
    save_hardware(hw, path)
    assert load_hardware(path) == hw
    assert resolve_hardware(str(path)) == hw and resolve_hardware(name) == hw
    # every figure names its source
    for key in ("rows", "cols", "clock_mhz", "energy.mac_pj", "energy.dram_pj_per_byte", "energy.sram_pj_per_byte"):
        assert hw.source(key), (name, key)


def test_preset_figures():
    tpu = preset("tpu_v4_like")
    assert (tpu.pods, tpu.rows, tpu.cols, tpu.clock_mhz) == (8, 128, 128, 1050.0)
    assert tpu.ifmap_sram_bytes + tpu.filter_sram_bytes + tpu.ofmap_sram_bytes == 16 * 2**20
    assert tpu.sram_pods_per_group == 4 and tpu.global_buffer_bytes == 128 * 2**20
    assert tpu.dram_bytes_per_cycle * tpu.clock_hz == pytest.approx(1.2e12)
    g = preset("scalesim_google")
    assert (g.pods, g.rows, g.cols, g.dataflow) == (1, 256, 256, "ws")
    assert (g.ifmap_sram_bytes, g.filter_sram_bytes, g.ofmap_sram_bytes) == (6 * 2**20, 6 * 2**20, 2 * 2**20)
    e = preset("edge_16x16")
    assert (e.rows, e.cols) == (16, 16) and 1e3 / e.clock_mhz == pytest.approx(3.0)
    assert (preset("eyeriss_like").rows, preset("eyeriss_like").cols) == (12, 14)


def test_sram_energy_interpolates():
    e = EnergyTable()
    assert e.sram_energy_pj_per_byte(8192) == pytest.approx(1.25)
    assert e.sram_energy_pj_per_byte(32768) == pytest.approx(2.5)
    assert 2.5 < e.sram_energy_pj_per_byte(2**17) < 12.5
    assert e.sram_energy_pj_per_byte(4 * 2**20) == pytest.approx(25.0)  # sqrt law beyond the table


@pytest.mark.parametrize("text,match", [
    ('preset = "edge_16x16"\nrows = -3\n', r"key 'rows' = -3: expected a positive integer"),
    ('preset = "edge_16x16"\ndataflow = "rs"\n', r"key 'dataflow' = 'rs': expected one of 'os', 'ws', 'is'"),
    ('preset = "edge_16x16"\nclock_mhz = "fast"\n', r"key 'clock_mhz' = 'fast': expected a positive number"),
    ('preset = "edge_16x16"\n[energy]\nmac_pj = -1.0\n', r"key 'energy.mac_pj' = -1.0: expected a non-negative"),
    ('preset = "edge_16x16"\ncolumns = 4\n', r"unknown key 'columns'"),
    ('preset = "edge_16x16"\n[energy]\nwatts = 4\n', r"unknown key 'energy.watts'"),
    ('preset = "nope"\n', r"key 'preset' = 'nope'"),
    ('name = "x"\npods = 1\n', r"missing key 'rows'"),
    ('preset = "tpu_v4_like"\nsram_pods_per_group = 3\n', r"key 'sram_pods_per_group' = 3: expected a divisor"),
    ('rows = [1,\n', r"not valid TOML"),
])
def test_bad_files_name_key_value_expected(tmp_path, text, match):
    p = tmp_path / "hw.toml"
    p.write_text(text)
    with pytest.raises(HardwareConfigError, match=match) as exc:
        load_hardware(p)
    assert str(p) in str(exc.value)


def test_preset_override(tmp_path):
    p = tmp_path / "hw.toml"
    p.write_text('preset = "scalesim_google"\nname = "mine"\nrows = 32\ncols = 32\n[energy]\nmac_pj = 0.5\n')
    hw = load_hardware(p)
    assert (hw.name, hw.rows, hw.cols, hw.ifmap_sram_bytes, hw.energy.mac_pj) == ("mine", 32, 32, 6 * 2**20, 0.5)


def test_derived():
    hw = HardwareConfig(name="x", pods=4, rows=2, cols=3, dataflow="os", ifmap_sram_bytes=800, filter_sram_bytes=400,
                        ofmap_sram_bytes=200, dram_bytes_per_cycle=1.0, clock_mhz=1.0, sram_pods_per_group=2)
    assert hw.pod_sram_bytes() == (400, 200, 100)
    assert hw.total_sram_bytes() == 2 * 1400
    with pytest.raises(HardwareConfigError, match="unknown hardware preset"):
        preset("zzz")
