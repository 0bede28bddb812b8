"""XAI-NAS search space: genome round trips, canonical keys, torch model vs mapping Network, pymoo variables."""

import numpy as np
import pytest
import torch

from cosim.axtorch import approximable_layers
from mapping.torch_import import from_torch
from nas.space import Genome, SearchSpace, SpaceError, StageGene, default_multipliers


@pytest.fixture(scope="module")
def space():
    return SearchSpace.for_dataset("mnist5k")


@pytest.fixture(scope="module")
def small():
    return SearchSpace.for_dataset("digits", max_stages=3, max_layers=2, channels=(4, 8))


def _summary(net):
    return [(l.kind, l.in_h, l.in_w, l.in_c, l.out_c, l.kernel_h, l.kernel_w, l.stride_h, l.pad_h, l.pool_op,
             l.n_inputs, l.macs, l.params) for l in net.layers]


def test_default_multipliers_are_a_pareto_subset_with_exact(space):
    from rtl_models.library import MultiplierLibrary

    names = default_multipliers()
    lib = MultiplierLibrary.default()
    assert space.exact in names and lib.get(space.exact).is_exact
    assert len(names) >= 3 and not all(lib.get(n).is_exact for n in names)
    assert space.positions[-1] == "FC" and len(space.positions) == space.max_stages * space.max_layers + 1


def test_genome_round_trips(space):
    rng = np.random.default_rng(0)
    for _ in range(100):
        g = space.sample(rng)
        assert space.decode(space.encode(g)) == g
        assert Genome.from_dict(g.to_dict()) == g
        # pymoo hands back NumPy scalars; decode must not care
        x = {k: (np.int64(v) if isinstance(v, int) and not isinstance(v, bool) else v)
             for k, v in space.encode(g).items()}
        assert space.decode(x) == g
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_key_ignores_inactive_genes(space):
    rng = np.random.default_rng(1)
    g = space.sample(rng)
    g = Genome(1, g.stages, g.mults)
    # change an inactive stage and an inactive position's multiplier: same key
    st = list(g.stages)
    st[2] = StageGene(1, space.channels[0], space.kernels[0], "pool", False)
    mults = list(g.mults)
    mults[space.positions.index("S3L1")] = space.multipliers[0]
    h = Genome(1, tuple(st), tuple(mults))
    assert space.key(g) == space.key(h) and space.key_hash(g) == space.key_hash(h)
    # the residual flag of a one-layer stage builds nothing
    a = Genome(1, (StageGene(1, 8, 3, "stride", True),) + g.stages[1:], g.mults)
    b = Genome(1, (StageGene(1, 8, 3, "stride", False),) + g.stages[1:], g.mults)
    assert space.key(a) == space.key(b)
    # an active multiplier gene changes the key
    c = space.with_multipliers(a, {"S1L1": space.exact})
    d = space.with_multipliers(a, {"S1L1": space.multipliers[0]})
    assert space.key(c) != space.key(d)


@pytest.mark.parametrize("which", ["space", "small"])
def test_model_and_network_agree(which, request):
    sp = request.getfixturevalue(which)
    rng = np.random.default_rng(2)
    for _ in range(25):
        g = sp.sample(rng)
        model = sp.build_model(g)
        net = sp.build_network(g)
        traced = from_torch(model, torch.zeros(1, *sp.input_shape))
        assert _summary(net) == _summary(traced)
        assert net.peak_activation_elems() == traced.peak_activation_elems()
        assert net.params == sum(p.numel() for p in model.parameters())
        assert approximable_layers(model) == list(sp.assignment(g)) == list(g.active_positions())
        out = model(torch.rand(3, *sp.input_shape))
        assert out.shape == (3, sp.classes)
        specs = sp.layer_specs(g)
        assert [s.macs for s in specs] == [net[s.name].macs for s in specs]


def test_downsampling_stops_at_one_pixel(small):
    # three pooled stages on 8x8 digits: 8 -> 4 -> 2 -> 1, and a fourth would have nothing to pool
    st = StageGene(2, 4, 5, "pool", True)
    g = Genome(3, (st, st, st), (small.exact,) * len(small.positions))
    specs = small.layer_specs(g)
    assert specs[-1].in_c == 4 * 1 * 1
    net = small.build_network(g)
    assert from_torch(small.build_model(g), torch.zeros(1, 1, 8, 8)).macs == net.macs
    st = StageGene(1, 4, 3, "stride", False)
    g = Genome(3, (st, st, st), (small.exact,) * len(small.positions))
    assert [(s.in_h, s.stride) for s in small.layer_specs(g)[:-1]] == [(8, 2), (4, 2), (2, 2)]


def test_pymoo_variables_sample_into_the_space(space):
    from pymoo.core.mixed import MixedVariableSampling
    from pymoo.core.problem import Problem

    prob = Problem(vars=space.variables(), n_obj=1)
    X = MixedVariableSampling()(prob, 30, random_state=np.random.default_rng(0)).get("X")
    genomes = [space.decode(x) for x in X]
    assert len({space.key(g) for g in genomes}) > 20


def test_errors_name_the_field(space):
    g = space.sample(np.random.default_rng(3))
    with pytest.raises(SpaceError, match="n_stages=9"):
        space.check(Genome(9, g.stages, g.mults))
    bad = (StageGene(1, 7, 3, "stride", False),) + g.stages[1:]
    with pytest.raises(SpaceError, match="stage 1 channels=7"):
        space.check(Genome(1, bad, g.mults))
    with pytest.raises(SpaceError, match="multiplier gene S1L1='nope'"):
        space.check(Genome(1, g.stages, ("nope",) + g.mults[1:]))
    with pytest.raises(SpaceError, match="lacks gene 's1_layers'"):
        space.decode({})
    with pytest.raises(SpaceError, match="exact='mul8u_etm_s4x'"):
        SearchSpace((1, 8, 8), 10, ("mul8u_etm_s4",), "mul8u_etm_s4x")  # not among the options
    with pytest.raises(SpaceError, match="kernels"):
        SearchSpace.for_dataset("digits", kernels=(2,))


def test_count_and_largest(small):
    assert small.count() > 1e6
    big = small.largest()
    net = small.build_network(big)
    rng = np.random.default_rng(4)
    assert all(small.build_network(small.sample(rng)).macs <= net.macs for _ in range(30))
