"""Layers, networks, the torch importer, the zoo's published counts, SCALE-Sim topologies."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mapping import zoo
from mapping.layer import Layer, MappingError, out_size
from mapping.network import Network
from mapping.topology import read_topology, topology_rows, write_topology
from mapping.torch_import import from_torch


# --- layers and networks -------------------------------------------------------------------

def test_layer_counts_by_hand():
    c = Layer("c", "conv2d", 32, 32, 3, 16, 3, 3, 1, 1, 1, 1, bias=True)
    assert (c.out_h, c.out_w) == (32, 32)
    assert c.gemm == (1, 1024, 16, 27)
    assert c.macs == 1024 * 16 * 27 and c.params == 27 * 16 + 16
    d = Layer("d", "depthwise", 16, 16, 8, 8, 3, 3, 2, 2, 1, 1, groups=8)
    assert d.gemm == (8, 64, 1, 9) and d.macs == 8 * 64 * 9 and d.weight_elems == 72
    f = Layer("f", "linear", 1, 1, 512, 10, batch=4)
    assert f.gemm == (1, 4, 10, 512) and f.input_elems == 2048 and f.output_elems == 40
    p = Layer("p", "pool", 8, 8, 4, 4, 2, 2, 2, 2, pool_op="max")
    assert p.macs == 0 and p.vector_ops == 4 * 4 * 4 * 4 and p.gemm == (0, 0, 0, 0)
    a = Layer("a", "add", 4, 4, 8, 8, n_inputs=2)
    assert a.input_elems == 256 and a.vector_ops == 128
    mm = Layer("mm", "matmul", 10, 1, 64, 10)
    assert mm.weight_elems == 0 and mm.input_elems == 640 + 640
    assert out_size(33, 3, 2, 0) == 16 and out_size(34, 3, 2, 0) == 16 and out_size(34, 3, 2, 0, ceil_mode=True) == 17
    assert Layer.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("kw,match", [
    (dict(kind="conv3d"), "kind"),
    (dict(in_h=0), "in_h = 0"),
    (dict(groups=5), "groups = 5"),
    (dict(kernel_h=40), "larger than the padded input"),
    (dict(pad_h=-1), "pad_h = -1"),
])
def test_layer_errors_name_the_field(kw, match):
    base = dict(name="x", kind="conv2d", in_h=8, in_w=8, in_c=4, out_c=8, kernel_h=3, kernel_w=3)
    with pytest.raises(MappingError, match=match):
        Layer(**{**base, **kw})


def test_network_edges_and_peak_activations():
    net = Network("r", input_shape=(4, 8, 8))
    net.add(Layer("a", "conv2d", 8, 8, 4, 4, 3, 3, pad_h=1, pad_w=1))           # 256 out
    net.add(Layer("b", "conv2d", 8, 8, 4, 4, 3, 3, pad_h=1, pad_w=1), ["a"])    # 256 out
    net.add(Layer("s", "add", 8, 8, 4, 4, n_inputs=2), ["a", "b"])              # skip edge a -> s
    assert net.inputs_of("s") == ["a", "b"] and net.consumers_of("a") == ["b", "s"]
    # at layer b: input (256, last read by a) gone; a (256) + b (256) live = 512; at s: a + b + s = 768
    assert net.peak_activation_elems() == 768
    with pytest.raises(MappingError, match="duplicate"):
        net.add(Layer("a", "add", 8, 8, 4, 4, n_inputs=2))
    with pytest.raises(MappingError, match="unknown layer 'zz'"):
        net.add(Layer("q", "add", 8, 8, 4, 4, n_inputs=2), ["zz"])


# --- zoo: published figures ------------------------------------------------------------------

def _params(name):
    return sum(p.numel() for p in zoo.model(name, device="meta").parameters())


def test_resnet18_published():
    net = zoo.network("resnet18")
    assert net.macs == pytest.approx(1.82e9, rel=0.005)
    assert _params("resnet18") == 11_689_512  # 11.69 M
    adds = [l for l in net.layers if l.kind == "add"]
    assert len(adds) == 8 and all(len(net.inputs_of(a.name)) == 2 for a in adds)  # skip edges are real
    assert all(l.bias for l in net.layers if l.kind == "conv2d")  # batch-norm folded into a bias


def test_mobilenetv2_published():
    net = zoo.network("mobilenetv2")
    assert net.macs == pytest.approx(300e6, rel=0.01)
    assert _params("mobilenetv2") == pytest.approx(3.5e6, rel=0.01)
    assert sum(l.kind == "depthwise" for l in net.layers) == 17


@pytest.mark.parametrize("name,params,macs", [
    ("resnet20", 269_722, 40.55e6), ("lenet5", 61_706, 416_520), ("alexnet", 61_100_840, 714e6),
    ("vgg11", 132_863_336, 7.61e9)])
def test_other_published(name, params, macs):
    assert _params(name) == params
    assert zoo.network(name).macs == pytest.approx(macs, rel=0.005)


def test_cifar_variants_and_small_models_import():
    for name in ("resnet18_cifar", "mobilenetv2_cifar", "digits_cnn"):
        net = zoo.network(name)
        assert net.macs > 0 and net.layers[-1].kind == "linear"
    assert zoo.network("resnet18_cifar").layers[0].kernel_h == 3
    with pytest.raises(MappingError, match="unknown zoo model"):
        zoo.network("resnet1000")


# --- torch import --------------------------------------------------------------------------

class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = torch.cat([F.relu(self.bn(self.a(x))), self.b(x)], dim=1)  # dense connection
        y = self.dw(y)
        q = y.mean([2, 3])
        return self.fc(q)


def test_import_real_tensor_matches_meta_and_routes_concat():
    torch.manual_seed(0)
    m = _Branchy().eval()
    net = from_torch(m, torch.randn(1, 3, 8, 8))
    assert [l.kind for l in net.layers] == ["conv2d", "conv2d", "depthwise", "pool", "linear"]
    assert net.inputs_of("dw") == ["a", "b"]
    assert net["a"].bias and net["dw"].groups == 16
    with torch.device("meta"):
        mm = _Branchy()
    net2 = from_torch(mm, torch.empty(1, 3, 8, 8, device="meta"))
    assert [l.to_dict() for l in net2.layers] == [l.to_dict() for l in net.layers]


class _DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # torch.fx cannot trace data-dependent control flow
            return x
        return -x


class _Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.gate = _DataDependent()

    def forward(self, x):
        return self.gate(self.conv(x))


def test_untraceable_module_is_named():
    with pytest.raises(MappingError, match=r"module 'gate' \(_DataDependent\)"):
        from_torch(_Outer(), torch.randn(1, 3, 4, 4))


def test_unmapped_module_is_named():
    m = nn.Sequential(nn.Conv2d(3, 3, 1), nn.LSTM(3, 3))
    with pytest.raises(MappingError, match=r"module '1' \(LSTM\)"):
        from_torch(m, torch.randn(1, 3, 4, 4))


def test_linear_on_sequence_and_matmul():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(16, 16)

        def forward(self, x):
            q = self.q(x)
            return torch.matmul(q, x.transpose(1, 2))

    net = from_torch(Attn(), torch.randn(2, 10, 16))
    assert net["q"].gemm == (1, 20, 16, 16)
    mm = [l for l in net.layers if l.kind == "matmul"][0]
    assert mm.gemm == (1, 20, 10, 16)


# --- SCALE-Sim topologies ----------------------------------------------------------------------

def test_topology_round_trip_and_rules(tmp_path):
    net = zoo.network("mobilenetv2_cifar")
    path = tmp_path / "mnv2.csv"
    skipped = write_topology(net, path)
    assert set(skipped) == {l.name for l in net.layers if not l.is_gemm}
    text = path.read_text().splitlines()
    assert all(line.endswith(",") for line in text)
    back = read_topology(path)
    gemm_layers = [l for l in net.layers if l.is_gemm]
    assert [l.gemm for l in back.layers] == [l.gemm for l in gemm_layers]
    assert sum("DP" in l.name for l in back.layers) == 17
    # torch floor output E written as H = s*(E-1) + Fh, read back with SCALE-Sim's ceil rule
    first = [l for l in back.layers if l.stride_h == 2][0]
    assert first.in_h == 2 * (first.out_h - 1) + first.kernel_h


def test_topology_matches_scalesims_own_parser(tmp_path):
    topo = pytest.importorskip("scalesim.topology_utils")
    net = zoo.network("resnet20")
    path = tmp_path / "r20.csv"
    write_topology(net, path)
    t = topo.topologies()
    t.load_arrays(str(path))
    ours = [l.gemm for l in net.layers if l.is_gemm]
    # SCALE-Sim's OS spatio-temporal dims are (M, N, K)
    theirs = [t.get_spatiotemporal_dims(layer_id=i, df="os") for i in range(t.get_num_layers())]
    assert [(m, n, k) for (_, m, n, k) in ours] == [tuple(x) for x in theirs]
    gpath = tmp_path / "r20_gemm.csv"
    write_topology(net, gpath, form="gemm")
    tg = topo.topologies()
    tg.load_arrays(str(gpath), mnk_inputs=True)
    theirs_g = [tg.get_spatiotemporal_dims(layer_id=i, df="os") for i in range(tg.get_num_layers())]
    assert [tuple(x) for x in theirs_g] == [(m, n, k) for (_, m, n, k) in ours]
    assert [l.gemm for l in read_topology(gpath).layers] == ours


@pytest.mark.parametrize("body,match", [
    ("c1, 8, 8, 3, 3, 4, 8, 1\n", "does not end with a comma"),
    ("c1, 8, 8, 3, 3, 4, x, 1,\n", "'Num Filter' = 'x'"),
    ("c1, 2, 8, 3, 3, 4, 8, 1,\n", "larger than the IFMAP"),
    ("c1, 8, 8, 3, 3, 4, 8, 1, 2:4,\n", "sparsity"),
])
def test_topology_errors(tmp_path, body, match):
    p = tmp_path / "bad.csv"
    p.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n" + body)
    with pytest.raises(MappingError, match=match):
        read_topology(p)


def test_grouped_and_uneven_strides():
    net = Network.chain("g", [Layer("g", "conv2d", 8, 8, 8, 8, 3, 3, groups=2)])
    lines, _ = topology_rows(net)
    assert len(lines) == 3 and lines[1].startswith("g_g0")
    bad = Network.chain("s", [Layer("s", "conv2d", 8, 8, 4, 4, 3, 3, 1, 2)])
    with pytest.raises(MappingError, match="strides 1x2"):
        topology_rows(bad)
