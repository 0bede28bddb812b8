"""Register-level systolic array: values equal the LUT GEMM, cycles equal the closed forms."""

import itertools

import numpy as np
import pytest

from rtl_models.array_model import ArrayHazard, SystolicArray, run_gemm
from rtl_models.metrics import exact_table

gemm = pytest.importorskip("mapping.gemm")


def lut_gemm(A, B, table):
    """Brute-force reference: sum_k T[A[m,k], B[k,n]]."""
    return np.asarray(table, np.int64)[A[:, :, None].astype(np.int64), B[None, :, :].astype(np.int64)].sum(axis=1)


def random_table(seed, signed=False):
    t = np.random.default_rng(seed).integers(0, 65536, (256, 256))
    return (t - 32768).astype(np.int16) if signed else t.astype(np.uint16)


CASES = [((7, 5, 3), (4, 4)), ((20, 13, 9), (3, 5)), ((5, 30, 17), (8, 2)), ((9, 4, 11), (1, 6))]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("convention", ["scalesim", "pipelined"])
def test_values_and_cycles_match_reference_and_closed_forms(dataflow, convention):
    rng = np.random.default_rng(0)
    table = random_table(1)
    for (M, K, N), (R, C) in CASES:
        A = rng.integers(0, 256, (M, K)).astype(np.uint8)
        B = rng.integers(0, 256, (K, N)).astype(np.uint8)
        run = SystolicArray(R, C, dataflow, (table, False), convention).run_gemm(A, B)
        assert np.array_equal(run.output, lut_gemm(A, B, table))
        assert run.macs == M * N * K
        sr, sc, t = gemm.operand_dims(M, N, K, dataflow)
        rf, cf = gemm.fold_counts(sr, sc, R, C)
        assert len(run.folds) == rf * cf
        closed = int(gemm.compute_cycles(1, sr, sc, t, R, C, dataflow, convention))
        assert int(run.fold_cycles().sum()) + run.lead_cycles == run.total_cycles
        if convention == "scalesim":
            assert run.scalesim_cycles() == closed  # SCALE-Sim prints the last cycle's index
            assert np.all(run.fold_cycles() == gemm.fold_period(t, R, C, dataflow))
            assert run.lead_cycles == 0
        else:
            assert run.total_cycles == closed
            assert run.lead_cycles == (0 if dataflow == "os" else R)
            assert np.all(run.fold_cycles()[:-1] == max(t, R))
            assert run.fold_cycles()[-1] == t + R + C - 2
        # folds are visited column fold outer, row fold inner (SCALE-Sim's order)
        assert [(f.col_fold, f.row_fold) for f in run.folds] == sorted((f.col_fold, f.row_fold) for f in run.folds)


def test_16x16_array_with_library_designs():
    designs = pytest.importorskip("rtl_models.designs").load_all()
    rng = np.random.default_rng(2)
    A = rng.integers(0, 256, (40, 37)).astype(np.uint8)
    B = rng.integers(0, 256, (37, 20)).astype(np.uint8)
    for name in ("mul8u_trunc_t6", "mul8s_bw_array", "mul8u_mitchell"):
        if name not in designs:
            continue
        spec = designs[name]
        t = spec.reference_table()
        for dataflow, conv in itertools.product(("os", "ws", "is"), ("scalesim", "pipelined")):
            run = run_gemm(A, B, (t, spec.signed), 16, 16, dataflow, conv)
            assert np.array_equal(run.output, lut_gemm(A, B, t)), (name, dataflow, conv)


def test_convolution_through_im2col_equals_lut_conv():
    ak = pytest.importorskip("cosim.axkernels")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 3, 6, 6)).astype(np.uint8)
    w = rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    table = (exact_table(True).astype(np.int16), True)
    ref = ak.lut_conv2d_reference(x, w, table, stride=1, padding=1)
    A = ak.im2col(x, 3, 3, 1, 1)
    run = run_gemm(A, w.reshape(4, -1).T, table, 8, 4, "ws", "pipelined")
    assert np.array_equal(run.output.reshape(1, 6, 6, 4).transpose(0, 3, 1, 2), ref)


def test_short_pipelined_interval_is_a_hazard():
    rng = np.random.default_rng(4)
    A = rng.integers(0, 256, (3, 12)).astype(np.uint8)  # WS: T = M = 3 < R = 4
    B = rng.integers(0, 256, (12, 4)).astype(np.uint8)
    t = random_table(5)
    ok = SystolicArray(4, 4, "ws", (t, False), "pipelined").run_gemm(A, B)
    assert np.array_equal(ok.output, lut_gemm(A, B, t))
    with pytest.raises(ArrayHazard):
        SystolicArray(4, 4, "ws", (t, False), "pipelined", interval=3).run_gemm(A, B)
    A2 = rng.integers(0, 256, (12, 2)).astype(np.uint8)  # OS: 3 row folds, T = K = 2 < R
    ok = SystolicArray(4, 4, "os", (t, False), "pipelined").run_gemm(A2, B[:2])
    assert np.array_equal(ok.output, lut_gemm(A2, B[:2], t))
    with pytest.raises(ArrayHazard):
        SystolicArray(4, 4, "os", (t, False), "pipelined", interval=2).run_gemm(A2, B[:2])


def test_errors():
    t = random_table(6)
    with pytest.raises(ValueError, match="1..16"):
        SystolicArray(17, 4, "os", (t, False))
    with pytest.raises(ValueError, match="dataflow"):
        SystolicArray(4, 4, "rs", (t, False))
    with pytest.raises(ValueError, match="convention"):
        SystolicArray(4, 4, "os", (t, False), "fast")
    with pytest.raises(ValueError, match="shapes do not match"):
        SystolicArray(4, 4, "os", (t, False)).run_gemm(np.zeros((2, 3), np.uint8), np.zeros((4, 2), np.uint8))
    with pytest.raises(ValueError, match="256x256"):
        SystolicArray(4, 4, "os", (t[:5], False))
