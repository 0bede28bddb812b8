"""Import a torch `nn.Module` into a `Network` through torch.fx tracing and shape propagation.

Mapped: Conv2d (depthwise when groups == in_channels > 1, other groups as grouped conv2d),
Linear, MaxPool2d / AvgPool2d / adaptive pools (when the output divides the input), residual
adds (``+``, torch.add, Tensor.add), matmul / bmm between two activations, global means over
H and W. Batch-norm is folded into the conv or linear that feeds it (which gains a bias);
element-wise activations, dropout, identity, flatten / view / reshape, padding, slicing and
concatenation cost nothing and only route the graph (a concatenation's consumer reads every
concatenated producer). Anything else, and a module torch.fx cannot trace, raises
`MappingError` naming the module.

Shapes come from `ShapeProp`. A module on the ``meta`` device (the zoo builds its models
there) propagates shapes without computing anything; otherwise the example input runs once.
"""

from __future__ import annotations

import operator

from .layer import Layer, MappingError
from .network import Network

try:  # torch is an optional dependency (the `ml` extra)
    import torch
    import torch.fx as fx
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.fx.passes.shape_prop import ShapeProp
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None

_PASS_MODULES = ()
if torch is not None:
    _PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                     nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softmax, nn.LogSoftmax, nn.Dropout,
                     nn.Dropout2d, nn.Identity, nn.Flatten, nn.Unflatten, nn.ZeroPad2d, nn.ConstantPad2d)
    _PASS_FUNCS = {torch.relu, torch.sigmoid, torch.tanh, torch.flatten, torch.reshape, torch.squeeze,
                   torch.unsqueeze, torch.transpose, torch.permute, torch.clamp, torch.softmax,
                   F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.hardswish, F.hardtanh, F.sigmoid, F.tanh,
                   F.dropout, F.pad, F.softmax, F.log_softmax, operator.getitem, torch.clone, F.elu, F.mish}
    _PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "view", "reshape", "flatten", "contiguous", "squeeze",
                     "unsqueeze", "permute", "transpose", "clamp", "clone", "softmax", "float", "to",
                     "expand", "expand_as", "view_as", "reshape_as", "clamp_", "detach", "t"}
    _MAPPED_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d,
                       nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    _ADD_FUNCS = {operator.add, operator.iadd, torch.add}
    _CAT_FUNCS = {torch.cat, torch.concat, torch.stack}
    _MATMUL_FUNCS = {operator.matmul, torch.matmul, torch.bmm, torch.mm}
    _MEAN_FUNCS = {torch.mean}


def _require_torch():
    if torch is None:
        raise MappingError("importing a torch model needs torch (install the 'ml' extra)")


class _NamingTracer(fx.Tracer if torch is not None else object):
    """A tracer that names the innermost module being traced when tracing fails."""

    def __init__(self):
        super().__init__()
        self._stack: list[str] = []

    def call_module(self, m, forward, args, kwargs):
        name = self.path_of_module(m)
        self._stack.append(name)
        try:
            return super().call_module(m, forward, args, kwargs)
        except MappingError:
            raise
        except Exception as exc:
            raise MappingError(
                f"cannot trace module {name or '<root>'!r} ({type(m).__name__}) with torch.fx: "
                f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._stack.pop()


def _shape(node) -> tuple[int, ...] | None:
    tm = node.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        return None
    return tuple(int(x) for x in tm.shape)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def _nhwc(shape: tuple[int, ...], where: str) -> tuple[int, int, int, int]:
    """(batch, H, W, C) of an NCHW (or CHW) shape."""
    if len(shape) == 4:
        b, c, h, w = shape
    elif len(shape) == 3:
        b, (c, h, w) = 1, shape
    else:
        raise MappingError(f"{where}: expected a 4-D (N, C, H, W) input, got shape {list(shape)}")
    return b, h, w, c


def from_torch(module, example_input, name: str | None = None) -> Network:
    """Trace `module` on `example_input` (a tensor, NCHW for convs) and return its `Network`."""
    _require_torch()
    name = name or type(module).__name__
    tracer = _NamingTracer()
    try:
        graph = tracer.trace(module)
    except MappingError:
        raise
    except Exception as exc:
        raise MappingError(f"cannot trace model {name!r} with torch.fx: {type(exc).__name__}: {exc}") from exc
    gm = fx.GraphModule(tracer.root, graph)
    modules = dict(gm.named_modules())
    # Name unsupported modules before shape propagation runs (and possibly fails inside) them.
    for node in gm.graph.nodes:
        if node.op == "call_module" and not isinstance(modules[node.target], _MAPPED_MODULES + _PASS_MODULES):
            mod = modules[node.target]
            raise MappingError(f"cannot map module {str(node.target)!r} ({type(mod).__name__}): no rule for this module type")
    x = example_input
    on_meta = any(p.is_meta for p in module.parameters())
    if on_meta and not x.is_meta:
        x = x.to("meta")
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    except Exception as exc:
        raise MappingError(f"shape propagation failed for model {name!r}: {type(exc).__name__}: {exc}") from exc

    net = Network(name, input_shape=tuple(int(s) for s in x.shape[1:]))
    producers: dict = {}  # fx node -> tuple of layer names whose outputs make up its value
    layer_of: dict[str, Layer] = {}
    users_count: dict = {n: len(n.users) for n in gm.graph.nodes}

    def prods(arg) -> tuple[str, ...]:
        if isinstance(arg, fx.Node):
            return producers.get(arg, ())
        if isinstance(arg, (list, tuple)):
            out: list[str] = []
            for a in arg:
                out.extend(prods(a))
            return tuple(dict.fromkeys(out))
        return ()

    def is_tensor_node(arg) -> bool:
        return isinstance(arg, fx.Node) and _shape(arg) is not None

    def add_layer(node, layer: Layer, inputs) -> None:
        net.add(layer, inputs)
        layer_of[layer.name] = layer
        producers[node] = (layer.name,)

    def pool_layer(node, lname, op, kernel, stride, pad, ceil_mode, where):
        src = node.args[0]
        b, h, w, c = _nhwc(_shape(src), where)
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride if stride not in (None, []) else kernel)
        ph, pw = _pair(pad)
        layer = Layer(lname, "pool", h, w, c, c, kh, kw, sh, sw, ph, pw, batch=b, ceil_mode=bool(ceil_mode), pool_op=op)
        want = _shape(node)
        if want is not None and len(want) == 4 and (layer.out_h, layer.out_w) != want[2:]:
            raise MappingError(f"{where}: pooling output {layer.out_h}x{layer.out_w} does not match torch's {want[2]}x{want[3]}")
        add_layer(node, layer, prods(src))

    def adaptive(node, lname, op, out_size, where):
        src = node.args[0]
        b, h, w, c = _nhwc(_shape(src), where)
        oh, ow = _pair(out_size)
        oh = h if oh is None else oh
        ow = w if ow is None else ow
        if h % oh or w % ow:
            raise MappingError(f"{where}: adaptive pooling {h}x{w} -> {oh}x{ow} needs the output to divide the input")
        kh, kw = h // oh, w // ow
        if (kh, kw) == (1, 1):
            producers[node] = prods(src)  # identity
            return
        pool_layer(node, lname, op, (kh, kw), (kh, kw), 0, False, where)

    for node in gm.graph.nodes:
        where = f"model {name!r}, node {node.name!r}"
        if node.op == "placeholder":
            producers[node] = ()
        elif node.op == "get_attr":
            producers[node] = ()
        elif node.op == "output":
            continue
        elif node.op == "call_module":
            mod = modules[node.target]
            mname = str(node.target)
            where = f"module {mname!r} ({type(mod).__name__})"
            src = node.args[0] if node.args else None
            if isinstance(mod, nn.Conv2d):
                if _pair(mod.dilation) != (1, 1):
                    raise MappingError(f"{where}: dilated convolutions are not supported (dilation {mod.dilation})")
                if isinstance(mod.padding, str):
                    if mod.padding == "valid":
                        ph = pw = 0
                    else:  # "same", stride 1
                        ph, pw = (mod.kernel_size[0] - 1) // 2, (mod.kernel_size[1] - 1) // 2
                else:
                    ph, pw = _pair(mod.padding)
                b, h, w, c = _nhwc(_shape(src), where)
                g = mod.groups
                kind = "depthwise" if g == c and g > 1 else "conv2d"
                kh, kw = _pair(mod.kernel_size)
                sh, sw = _pair(mod.stride)
                layer = Layer(mname, kind, h, w, c, mod.out_channels, kh, kw, sh, sw, ph, pw, groups=g, batch=b,
                              bias=mod.bias is not None)
                want = _shape(node)
                if want is not None and (layer.out_h, layer.out_w) != want[2:]:
                    raise MappingError(f"{where}: output {layer.out_h}x{layer.out_w} does not match torch's {want[2]}x{want[3]}"
                                       " (asymmetric padding is not supported)")
                add_layer(node, layer, prods(src))
            elif isinstance(mod, nn.Linear):
                shp = _shape(src)
                feats = shp[-1]
                rows = 1
                for s in shp[1:-1]:
                    rows *= s
                layer = Layer(mname, "linear", rows, 1, feats, mod.out_features, batch=shp[0] if len(shp) > 1 else 1,
                              bias=mod.bias is not None)
                add_layer(node, layer, prods(src))
            elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                p = prods(src)
                # Fold into the producing conv/linear when this BN is its only reader.
                if len(p) == 1 and isinstance(src, fx.Node) and users_count.get(src, 0) == 1 and \
                        layer_of[p[0]].kind in ("conv2d", "depthwise", "linear") and src.op == "call_module" and \
                        str(src.target) == p[0]:
                    lay = layer_of[p[0]]
                    if not lay.bias:
                        from dataclasses import replace
                        lay = replace(lay, bias=True)
                        net.replace(lay)
                        layer_of[lay.name] = lay
                producers[node] = p
            elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
                if isinstance(mod, nn.MaxPool2d) and _pair(mod.dilation) != (1, 1):
                    raise MappingError(f"{where}: dilated pooling is not supported")
                pool_layer(node, mname, "max" if isinstance(mod, nn.MaxPool2d) else "avg", mod.kernel_size,
                           mod.stride, mod.padding, mod.ceil_mode, where)
            elif isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                adaptive(node, mname, "avg" if isinstance(mod, nn.AdaptiveAvgPool2d) else "max", mod.output_size, where)
            elif isinstance(mod, _PASS_MODULES):
                producers[node] = prods(src)
            else:
                raise MappingError(f"cannot map {where}: no rule for this module type")
        elif node.op in ("call_function", "call_method"):
            fn = node.target
            fname = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
            where = f"model {name!r}, node {node.name!r} ({fname})"
            tensor_args = [a for a in node.args if is_tensor_node(a)]
            if (node.op == "call_function" and fn in _ADD_FUNCS) or (node.op == "call_method" and fn in ("add", "add_", "__add__")):
                if len(tensor_args) >= 2 and _shape(node) is not None:
                    shp = _shape(node)
                    if len(shp) == 4:
                        b, h, w, c = _nhwc(shp, where)
                    else:
                        b, h, w, c = shp[0], 1, 1, 1
                        for s in shp[1:]:
                            c *= s
                    inputs = prods(tensor_args)
                    add_layer(node, Layer(node.name, "add", h, w, c, c, batch=b, n_inputs=len(tensor_args)), inputs)
                else:
                    producers[node] = prods(tensor_args)
            elif (node.op == "call_function" and fn in _MATMUL_FUNCS) or (node.op == "call_method" and fn in ("matmul", "bmm", "mm")):
                if len(tensor_args) != 2:
                    raise MappingError(f"cannot map {where}: matmul needs two tensor operands")
                sa, sb = _shape(tensor_args[0]), _shape(tensor_args[1])
                kdim, ndim = sa[-1], sb[-1]
                rows = 1
                for s in sa[:-1]:
                    rows *= s
                batch = 1
                for s in sb[:-2]:
                    batch *= s
                rows //= batch
                add_layer(node, Layer(node.name, "matmul", rows, 1, kdim, ndim, batch=batch), prods(tensor_args))
            elif (node.op == "call_function" and fn in _MEAN_FUNCS) or (node.op == "call_method" and fn == "mean"):
                dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                src = node.args[0]
                shp = _shape(src)
                dims = tuple(d % len(shp) for d in (dims if isinstance(dims, (tuple, list)) else (dims,))) if dims is not None else None
                if shp is not None and len(shp) == 4 and dims is not None and set(dims) == {2, 3}:
                    b, h, w, c = _nhwc(shp, where)
                    pool_layer(node, node.name, "avg", (h, w), (h, w), 0, False, where)
                else:
                    raise MappingError(f"cannot map {where}: only means over H and W of an NCHW tensor are supported")
            elif node.op == "call_function" and fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
                out = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
                adaptive(node, node.name, "avg" if fn is F.adaptive_avg_pool2d else "max", out, where)
            elif node.op == "call_function" and fn in (F.max_pool2d, F.avg_pool2d):
                args = list(node.args) + [None] * 5
                kw = node.kwargs
                kernel = args[1] if args[1] is not None else kw.get("kernel_size")
                stride = args[2] if args[2] is not None else kw.get("stride")
                pad = args[3] if args[3] is not None else kw.get("padding", 0)
                ceil = kw.get("ceil_mode", False)
                pool_layer(node, node.name, "max" if fn is F.max_pool2d else "avg", kernel, stride, pad, ceil, where)
            elif node.op == "call_function" and fn in _CAT_FUNCS:
                producers[node] = prods(node.args[0])
            elif (node.op == "call_function" and fn in _PASS_FUNCS) or (node.op == "call_method" and fn in _PASS_METHODS):
                producers[node] = prods(list(node.args) + list(node.kwargs.values()))
            elif node.op == "call_method" and fn in ("size", "dim", "numel") or (node.op == "call_function" and fn in (getattr,)):
                producers[node] = ()
            else:
                raise MappingError(f"cannot map {where}: no rule for this operation")
        else:  # pragma: no cover - fx has no other ops
            raise MappingError(f"cannot map {where}: unknown fx op {node.op!r}")
    if len(net) == 0:
        raise MappingError(f"model {name!r}: no layers found")
    return net
