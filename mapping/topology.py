"""SCALE-Sim topology CSV files, conv and GEMM forms, read and write.

SCALE-Sim 3.0.0's rules (`scalesim/topology_utils.py`), which both directions follow:

* every row, header included, ends with a trailing comma (SCALE-Sim drops the last field);
* conv form: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides,`` (an optional 9th field is an N:M sparsity ratio, which must be 1:1
  here); GEMM form: ``Layer, M, N, K,``;
* there is no padding: the IFMAP is already padded, and the output is ceil((H - Fh + s) / s);
  so a layer is written with H = s * (E - 1) + Fh, the smallest input that gives torch's output
  size E, and read back with `Layer.ceil_mode` set so its output is SCALE-Sim's;
* one stride for both axes;
* a layer is depthwise exactly when its name contains ``DP``: SCALE-Sim then runs it channel
  by channel, each channel with ``Num Filter`` filters. Non-depthwise names containing ``DP``
  are written with it lower-cased; grouped (not depthwise) convolutions are written as one row
  per group (``name_g<i>``).

A topology is a chain of layers: reading gives a `Network` in which each layer reads the
previous one. Pool and add layers have no SCALE-Sim form and are skipped when writing (the
writer returns their names).
"""

from __future__ import annotations

from pathlib import Path

from ._atomic import atomic_write_text
from .layer import Layer, MappingError
from .network import Network

CONV_HEADER = ["Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
               "Num Filter", "Strides"]
GEMM_HEADER = ["Layer", "M", "N", "K"]


def _row(fields) -> str:
    return ", ".join(str(f) for f in fields) + ",\n"


def _int(val: str, path, line: int, column: str) -> int:
    try:
        v = int(val.strip())
    except ValueError:
        raise MappingError(f"{path}:{line}: column {column!r} = {val.strip()!r}: expected a positive integer") from None
    if v < 1:
        raise MappingError(f"{path}:{line}: column {column!r} = {v}: expected a positive integer")
    return v


def read_topology(path: str | Path, form: str = "auto", name: str | None = None) -> Network:
    """Read a SCALE-Sim topology CSV (`form` 'conv', 'gemm' or 'auto' from the header)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: no such topology file") from None
    lines = text.splitlines()
    if not lines:
        raise MappingError(f"{path}: empty topology file")
    header = [h.strip() for h in lines[0].split(",")]
    if form == "auto":
        form = "gemm" if [h.lower() for h in header[1:4]] == ["m", "n", "k"] else "conv"
    if form not in ("conv", "gemm"):
        raise MappingError(f"topology form {form!r}: expected 'conv', 'gemm' or 'auto'")
    layers: list[Layer] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(lines[1:], start=2):
        row = raw.strip()
        if not row:
            continue
        if not row.endswith(","):
            raise MappingError(f"{path}:{lineno}: row does not end with a comma (SCALE-Sim drops the last field)")
        elems = [e.strip() for e in row.split(",")[:-1]]
        lname = elems[0]
        if not lname:
            raise MappingError(f"{path}:{lineno}: empty layer name")
        if lname in seen:
            raise MappingError(f"{path}:{lineno}: duplicate layer name {lname!r}")
        seen.add(lname)
        if form == "gemm":
            if len(elems) < 4:
                raise MappingError(f"{path}:{lineno}: expected 'Layer, M, N, K,', got {len(elems)} fields")
            m, n, k = (_int(elems[i], path, lineno, c) for i, c in ((1, "M"), (2, "N"), (3, "K")))
            _check_sparsity(elems[4:], path, lineno)
            layers.append(Layer(lname, "linear", m, 1, k, n))
        else:
            if len(elems) < 8:
                raise MappingError(f"{path}:{lineno}: expected {len(CONV_HEADER)} fields ({', '.join(CONV_HEADER)}), "
                                   f"got {len(elems)}")
            h, w, fh, fw, c, nf, s = (_int(elems[i], path, lineno, CONV_HEADER[i]) for i in range(1, 8))
            _check_sparsity(elems[8:], path, lineno)
            if fh > h or fw > w:
                raise MappingError(f"{path}:{lineno}: filter {fh}x{fw} larger than the IFMAP {h}x{w}")
            try:
                if "DP" in lname:
                    layers.append(Layer(lname, "depthwise" if c > 1 else "conv2d", h, w, c, c * nf, fh, fw, s, s,
                                        groups=c, ceil_mode=True))
                else:
                    layers.append(Layer(lname, "conv2d", h, w, c, nf, fh, fw, s, s, ceil_mode=True))
            except MappingError as exc:
                raise MappingError(f"{path}:{lineno}: {exc}") from None
    if not layers:
        raise MappingError(f"{path}: no layers")
    return Network.chain(name or path.stem, layers)


def _check_sparsity(rest: list[str], path, lineno: int) -> None:
    if rest and rest[0] and rest[0].replace(" ", "") not in ("1:1",):
        raise MappingError(f"{path}:{lineno}: sparsity ratio {rest[0]!r}: only dense layers (1:1) are supported")


def _safe_name(name: str, depthwise: bool) -> str:
    name = name.replace(",", "_").replace(" ", "_")
    if not depthwise:
        name = name.replace("DP", "dp")
    elif "DP" not in name:
        name = name + "_DP"
    return name


def topology_rows(network: Network, form: str = "conv") -> tuple[list[str], list[str]]:
    """CSV lines (header first) for `network`, and the names of the layers with no SCALE-Sim form."""
    if form not in ("conv", "gemm"):
        raise MappingError(f"topology form {form!r}: expected 'conv' or 'gemm'")
    lines = [_row(CONV_HEADER if form == "conv" else GEMM_HEADER)]
    skipped: list[str] = []
    for layer in network.layers:
        if not layer.is_gemm:
            skipped.append(layer.name)
            continue
        g, m, n, k = layer.gemm
        if form == "gemm":
            if g == 1:
                lines.append(_row([_safe_name(layer.name, False), m, n, k]))
            else:
                lines += [_row([_safe_name(f"{layer.name}_g{i}", False), m, n, k]) for i in range(g)]
            continue
        if layer.stride_h != layer.stride_w:
            raise MappingError(f"layer {layer.name!r}: strides {layer.stride_h}x{layer.stride_w} differ; "
                               "SCALE-Sim has one stride for both axes")
        if layer.batch != 1:
            raise MappingError(f"layer {layer.name!r}: batch {layer.batch}; SCALE-Sim topologies have batch 1")
        s = layer.stride_h
        eh, ew = layer.out_h, layer.out_w
        # The smallest (padded) input with SCALE-Sim's ceil rule giving torch's output size.
        h, w = s * (eh - 1) + layer.kernel_h, s * (ew - 1) + layer.kernel_w
        cin_g = layer.in_c // g
        if layer.kind == "depthwise":
            lines.append(_row([_safe_name(layer.name, True), h, w, layer.kernel_h, layer.kernel_w, layer.in_c,
                               layer.out_c // layer.in_c, s]))
        elif g == 1:
            lines.append(_row([_safe_name(layer.name, False), h, w, layer.kernel_h, layer.kernel_w, cin_g, n, s]))
        else:
            lines += [_row([_safe_name(f"{layer.name}_g{i}", False), h, w, layer.kernel_h, layer.kernel_w, cin_g, n, s])
                      for i in range(g)]
    return lines, skipped


def write_topology(network: Network, path: str | Path, form: str = "conv") -> list[str]:
    """Write `network` as a SCALE-Sim topology CSV (atomically); returns the skipped layers' names."""
    lines, skipped = topology_rows(network, form)
    atomic_write_text(path, "".join(lines))
    return skipped
