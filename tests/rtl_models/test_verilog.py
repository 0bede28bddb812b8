"""Verilog reader/writer: both EvoApprox styles, cell mapping, errors, and the write->read round trip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rtl_models.designs import load_all
from rtl_models.metrics import exact_table
from rtl_models.netlist import NetlistError
from rtl_models.simulate import simulate
from rtl_models.verilog import (
    VerilogError,
    eval_netlist_bits,
    normalize_ports,
    parse_verilog,
    read_verilog,
    read_verilog_modules,
    write_verilog,
)

EXACT_U = exact_table(False)

PDKGEN_MODULES = """
/* mod */
module PDKGENHAX1( input A, input B, output YS, output YC );
    assign YS = A ^ B;
    assign YC = A & B;
endmodule
/* mod */
module PDKGENFAX1( input A, input B, input C, output YS, output YC );
    assign YS = (A ^ B) ^ C;
    assign YC = (A & B) | (B & C) | (A & C);
endmodule
/* mod */
module PDKGENAND2X1(input A, input B, output Y );
     assign Y = A & B;
endmodule
"""


def array_multiplier(name: str, ha: str, fa: str, and2: str | None, ansi: bool = False,
                     out: str = "O", positional_fa: bool = False) -> str:
    """An exact unsigned 8x8 carry-save array multiplier in EvoApprox's structural style.

    Partial products are AND cells (`and2`) or expressions in the pin connections
    (``.B((A[1] & B[0]))``, as EvoApproxLib writes them) when `and2` is None.
    """
    lines = []
    if ansi:
        lines.append(f"module {name}(input [7:0] A, input [7:0] B, output [15:0] {out});")
    else:
        lines += [f"module {name} ( A, B, {out} );", "  input [7:0] A;", "  input [7:0] B;", f"  output [15:0] {out};"]
    lines.append("  wire [63:0] pp;")
    lines.append("  wire [63:0] s, c;")

    def pp(i, j):  # a_i b_j
        return f"pp[{8 * j + i}]" if and2 else f"(A[{i}] & B[{j}])"

    if and2:
        for j in range(8):
            for i in range(8):
                lines.append(f"  {and2} g{i}_{j} (.A(A[{i}]), .B(B[{j}]), .Y(pp[{8 * j + i}]));")
    # row 0: s[i] = a_i b_0
    for i in range(8):
        lines.append(f"  assign s[{i}] = {pp(i, 0)};")
    lines.append("  assign c[7:0] = 8'b0;")
    k = 0
    for j in range(1, 8):
        # add row j (weight 2^j) to the running sum bits s[8(j-1)+1 .. ], carry-save
        for i in range(8):
            a = f"s[{8 * (j - 1) + i + 1}]" if i < 7 else "1'b0"
            b_ = pp(i, j)
            cin = f"c[{8 * (j - 1) + i}]"
            so, co = f"s[{8 * j + i}]", f"c[{8 * j + i}]"
            if i == 7:
                lines.append(f"  {ha} h{k} (.A({b_}), .B({cin}), .YS({so}), .YC({co}));")
            elif positional_fa and k % 2:
                lines.append(f"  {fa} f{k} ({a}, {b_}, {cin}, {so}, {co});")
            else:
                lines.append(f"  {fa} f{k} (.A({a}), .B({b_}), .C({cin}), .YS({so}), .YC({co}));")
            k += 1
    # final ripple adder over the last carry-save pair
    lines.append("  wire [8:0] r;")
    lines.append("  assign r[0] = 1'b0;")
    lines.append("  wire [7:0] f;")
    for i in range(8):
        a = f"s[{56 + i + 1}]" if i < 7 else "1'b0"
        lines.append(f"  {fa} fr{i} (.A({a}), .B(c[{56 + i}]), .C(r[{i}]), .YS(f[{i}]), .YC(r[{i + 1}]));")
    low = ",".join(f"s[{8 * j}]" for j in reversed(range(8)))
    lines.append(f"  assign {out} = {{f, {low}}};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def table_of(nl, signed=False):
    return simulate(normalize_ports(nl), signed=signed).table.astype(np.int64)


# -- assign style ----------------------------------------------------------------------------


def exact_assign_style(ansi: bool, out: str = "O") -> str:
    head = (f"module mul8u_add(input [7:0] A, input [7:0] B, output [15:0] {out});" if ansi else
            f"module mul8u_add(A, B, {out});\n  input [7:0] A;\n  input [7:0] B;\n  output [15:0] {out};")
    body = [head]
    for j in range(8):
        body.append(f"  wire [15:0] p{j};")
        hi = 8 - j
        parts = [f"{hi}'b0", f"A & {{8{{B[{j}]}}}}"] + ([f"{j}'b0"] if j else [])
        body.append(f"  assign p{j} = {{{', '.join(parts)}}};")
    body.append(f"  assign {out} = p0 + p1 + p2 + p3 + p4 + p5 + p6 + p7;")
    body.append("endmodule")
    return "\n".join(body) + "\n"


@pytest.mark.parametrize("ansi", [False, True])
def test_assign_style_exact_multiplier_with_vector_add(ansi):
    nl = read_verilog(exact_assign_style(ansi))
    assert (table_of(nl) == EXACT_U).all()
    counts = nl.cell_counts()
    # constants fold: 64 partial-product ANDs and a ripple-carry adder chain of FA/HA only
    assert counts["AND2"] == 64 and set(counts) <= {"AND2", "FA", "HA"}


def test_output_named_otherwise_and_lowercase_inputs():
    src = exact_assign_style(True, out="P")
    nl = read_verilog(src)
    assert list(nl.outputs) == ["P"]
    assert (simulate(nl).table.astype(np.int64) == EXACT_U).all()  # the single output is found
    norm = normalize_ports(nl)
    assert list(norm.outputs) == ["O"]
    src2 = ("module m(input [7:0] x, input [7:0] y, output [15:0] z);\n"
            "  assign z = {8'b0, x & y};\nendmodule\n")
    norm2 = normalize_ports(read_verilog(src2))
    t = simulate(norm2).table.astype(np.int64)
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    assert (t == (a & b)).all()  # x -> A, y -> B in declaration order


def test_evoapprox_lite_assign_style_subset():
    # EvoApproxLib "sig_" style: multi-line port list, comma wire lists, O bits assigned one by one.
    src = """// MAE% = 0.00 %
module mul8u_TST (
    A,
    B,
    O
);

input [7:0] A;
input [7:0] B;
output [15:0] O;

wire sig_1,sig_2;
wire sig_3;
assign sig_1 = A[0] & B[0];
assign sig_2 = ~(A[1] & B[1]);
assign sig_3 = sig_2 ^ sig_1;
assign O[15] = sig_3;
assign O[14:2] = 13'b0;
assign O[1] = 1'b1;
assign O[0] = sig_1;
endmodule
"""
    nl = read_verilog(src, path="mul8u_TST.v")
    t = table_of(nl)
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    s1 = (a & b) & 1
    s2 = 1 - ((a >> 1) & (b >> 1) & 1)
    assert (t == ((s2 ^ s1) << 15 | 2 | s1)).all()
    assert nl.cell_counts() == {"AND2": 1, "NAND2": 1, "XOR2": 1}


@pytest.mark.parametrize(
    "expr, kind",
    [
        ("~(a & b)", "NAND2"), ("~(a | b)", "NOR2"), ("~(a ^ b)", "XNOR2"), ("a ~^ b", "XNOR2"),
        ("~(a & b & c)", "NAND3"), ("~((a & b) & c)", "NAND3"), ("~(a | b | c)", "NOR3"),
        ("~((a & b) | c)", "AOI21"), ("~(c | (a & b))", "AOI21"), ("~((a | b) & c)", "OAI21"),
        ("(a & ~c) | (b & c)", "MUX2"), ("(c & b) | (~c & a)", "MUX2"), ("c ? b : a", "MUX2"),
        ("a ^ b", "XOR2"), ("~a", "INV"), ("a & b", "AND2"), ("a | b", "OR2"),
    ],
)
def test_expressions_map_onto_cells(expr, kind):
    src = f"module t(input a, input b, input c, output y);\n  assign y = {expr};\nendmodule\n"
    nl = read_verilog(src)
    assert nl.cell_counts() == {kind: 1}
    # and the function is right, on all 8 input vectors
    ins = [nl.inputs[p][0] for p in ("a", "b", "c")]
    for a, b, c in itertools.product((0, 1), repeat=3):
        val = eval_netlist_bits(nl, dict(zip(ins, (a, b, c))))
        want = {
            "NAND2": 1 - (a & b), "NOR2": 1 - (a | b), "XNOR2": 1 - (a ^ b), "NAND3": 1 - (a & b & c),
            "NOR3": 1 - (a | b | c), "AOI21": 1 - ((a & b) | c), "OAI21": 1 - ((a | b) & c),
            "MUX2": b if c else a, "XOR2": a ^ b, "INV": 1 - a, "AND2": a & b, "OR2": a | b,
        }[kind]
        assert val[nl.outputs["y"][0]] == want, (expr, a, b, c)


def test_constants_fold_in_expressions_but_instances_are_kept():
    src = """module t(input [1:0] A, output [2:0] O);
  wire one;
  assign one = 1'b1;
  assign O[0] = A[0] & one;
  assign O[1] = A[1] | 1'b0;
  HAX1 u (.A(1'b1), .B(A[0]), .YS(O[2]), .YC());
endmodule
"""
    nl = read_verilog(src)
    assert nl.cell_counts() == {"HA": 1}  # the AND/OR fold away, the HA instance stays
    assert nl.outputs["O"][:2] == nl.inputs["A"]


# -- structural style ------------------------------------------------------------------------------


@pytest.mark.parametrize("and2", ["PDKGENAND2X1", None])
def test_structural_pdkgen_modules_become_our_cells(and2):
    src = array_multiplier("mul8u_pdkgen", "PDKGENHAX1", "PDKGENFAX1", and2, positional_fa=True) + PDKGEN_MODULES
    vf = parse_verilog(src)
    assert vf.top_name() == "mul8u_pdkgen"  # the one module nobody instantiates
    nl = read_verilog(src)
    assert (table_of(nl) == EXACT_U).all()
    counts = nl.cell_counts()
    assert counts["HA"] == 7 and counts["FA"] == 57 and counts["AND2"] == 64, counts


def test_structural_45nm_cells():
    src = array_multiplier("mul8u_pdk45", "HAX1", "FAX1", "AND2X1", ansi=True)
    nl = read_verilog(src)
    assert (table_of(nl) == EXACT_U).all()
    assert nl.cell_counts() == {"AND2": 64, "HA": 7, "FA": 57}


LIB_SPEC = {
    "AND2X1": (2, lambda a, b: a & b), "OR2X1": (2, lambda a, b: a | b),
    "NAND2X1": (2, lambda a, b: 1 - (a & b)), "NOR2X1": (2, lambda a, b: 1 - (a | b)),
    "XOR2X1": (2, lambda a, b: a ^ b), "XNOR2X1": (2, lambda a, b: 1 - (a ^ b)),
    "INVX1": (1, lambda a: 1 - a), "BUFX2": (1, lambda a: a),
    "NAND3X1": (3, lambda a, b, c: 1 - (a & b & c)), "NOR3X1": (3, lambda a, b, c: 1 - (a | b | c)),
    "AOI21X1": (3, lambda a, b, c: 1 - ((a & b) | c)), "OAI21X1": (3, lambda a, b, c: 1 - ((a | b) & c)),
    "MUX2X1": (3, lambda a, b, s: b if s else a),
}


@pytest.mark.parametrize("cell", sorted(LIB_SPEC) + ["HAX1", "FAX1"])
@pytest.mark.parametrize("style", ["named", "positional"])
def test_45nm_cell_semantics(cell, style):
    if cell in ("HAX1", "FAX1"):
        n = 2 if cell == "HAX1" else 3
        pins, outs = ["A", "B", "C"][:n], ["YS", "YC"]
    else:
        n = LIB_SPEC[cell][0]
        pins = ["A", "B", "S" if cell == "MUX2X1" else "C"][:n]
        outs = ["Y"]
    nets = [f"i{k}" for k in range(n)]
    onets = [f"o{k}" for k in range(len(outs))]
    if style == "named":
        conns = ", ".join(f".{p}({x})" for p, x in zip(pins + outs, nets + onets))
    else:
        conns = ", ".join(nets + onets)
    src = (f"module t({', '.join(nets + onets)});\n" + "".join(f"  input {x};\n" for x in nets)
           + "".join(f"  output {x};\n" for x in onets) + f"  {cell} u0 ({conns});\nendmodule\n")
    nl = read_verilog(src)
    for bits in itertools.product((0, 1), repeat=n):
        val = eval_netlist_bits(nl, {nl.inputs[x][0]: v for x, v in zip(nets, bits)})
        got = tuple(val[nl.outputs[o][0]] for o in onets)
        if cell == "HAX1":
            want = (bits[0] ^ bits[1], bits[0] & bits[1])
        elif cell == "FAX1":
            want = (sum(bits) & 1, int(sum(bits) >= 2))
        else:
            want = (LIB_SPEC[cell][1](*bits),)
        assert got == want, (cell, bits)


def test_evoapprox8b_mangled_cell_names_are_recovered():
    # EvoApprox8b's generic .v files use undefined names such as XPDKGENOR2X1 (= XOR2X1) and
    # define PDKGEPDKGENNAND2X1 with an AND body; both must come out right.
    src = """module mul8_tst(A, B, O);
  input [7:0] A;
  input [7:0] B;
  output [15:0] O;
  wire [63:0] N;
  assign N[0] = A[0];
  assign N[1] = B[0];
  XPDKGENOR2X1 n2(.A(N[0]), .B(N[1]), .Y(N[2]));
  XNPDKGENOR2X1 n3(.A(N[0]), .B(N[1]), .Y(N[3]));
  NPDKGEPDKGENNAND2X1 n4(.A(N[0]), .B(N[1]), .Y(N[4]));
  PDKGEPDKGENNAND2X1 n5(.A(N[0]), .B(N[1]), .Y(N[5]));
  assign O = {12'b0, N[5], N[4], N[3], N[2]};
endmodule
/* mod */
module PDKGEPDKGENNAND2X1(input A, input B, output Y );
     assign Y = A & B;
endmodule
/* mod */
module PDKGENXOR2X1(input A, input B, output Y );
     assign Y = A ^ B;
endmodule
"""
    nl = read_verilog(src)
    assert nl.cell_counts() == {"XOR2": 1, "XNOR2": 1, "NAND2": 1, "AND2": 1}
    t = table_of(nl)
    a0 = (np.arange(256)[:, None] & 1) * np.ones((1, 256), dtype=np.int64)
    b0 = (np.arange(256)[None, :] & 1) * np.ones((256, 1), dtype=np.int64)
    assert (t == ((a0 ^ b0) | (1 - (a0 ^ b0)) << 1 | (1 - (a0 & b0)) << 2 | (a0 & b0) << 3)).all()


def test_non_cell_module_is_inlined_and_modules_read_separately():
    src = """module add2(input [1:0] x, input [1:0] y, output [2:0] s);
  assign s = x + y;
endmodule
module top(input [7:0] A, input [7:0] B, output [15:0] O);
  wire [2:0] lo;
  add2 u (.x(A[1:0]), .y(B[1:0]), .s(lo));
  assign O = {13'b0, lo};
endmodule
"""
    nl = read_verilog(src)
    t = table_of(nl)
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    assert (t == (a & 3) + (b & 3)).all()
    mods = read_verilog_modules(src)
    assert list(mods) == ["add2", "top"] and list(mods["add2"].outputs["s"]) and len(mods["add2"].inputs) == 2
    assert read_verilog(src, top="add2").name == "add2"


# -- errors --------------------------------------------------------------------------------------------

HEAD = "module m(A, B, O);\n  input [7:0] A;\n  input [7:0] B;\n  output [15:0] O;\n"


@pytest.mark.parametrize(
    "body, line, token, words",
    [
        ("  wire x, y;\n  assign x = A[0] & y;\n  assign O = {15'b0, x};\n", 6, "y", "undriven"),
        ("  wire x;\n  FOO3X1 u1 (.A(A[0]), .B(B[0]), .Y(x));\n  assign O = {15'b0, x};\n", 6, "FOO3X1",
         "unknown cell"),
        ("  assign O = A $ B;\n", 5, "$", "unexpected character"),
        ("  assign O = A * B;\n", 5, "*", "unsupported operator"),
        ("  wire x;\n  assign x = A[0];\n  AND2X1 u (.A(A[0]), .B(B[0]), .Y(x));\n  assign O = {15'b0, x};\n",
         7, "x", "multiple drivers"),
        ("  wire x, y;\n  AND2X1 u1 (.A(A[0]), .B(y), .Y(x));\n  OR2X1 u2 (.A(x), .B(B[0]), .Y(y));\n"
         "  assign O = {15'b0, x};\n", None, None, "combinational loop"),
        ("  assign O = {8'b0, A[8], 7'b0};\n", 5, "A[8]", "out of range"),
        ("  assign O[14:0] = A;\n", 4, "O[15]", "undriven"),
        ("  wire x;\n  AND2X1 u1 (.A(A[0]), .Q(B[0]), .Y(x));\n  assign O = {15'b0, x};\n", 6, "Q", "no pin"),
        ("  always @(A) O = A;\n", 5, "always", "unsupported construct"),
    ],
)
def test_errors_name_file_line_and_token(body, line, token, words):
    with pytest.raises(VerilogError) as info:
        read_verilog(HEAD + body + "endmodule\n", path="bad_mul.v")
    e = info.value
    assert isinstance(e, NetlistError)
    assert e.path == "bad_mul.v" and str(e).startswith("bad_mul.v:")
    assert words in str(e)
    if line is not None:
        assert e.line == line and str(e).startswith(f"bad_mul.v:{line}:")
    else:
        assert e.line is not None
    if token is not None:
        assert e.token == token and token in str(e)


def test_error_reports_the_file_path(tmp_path):
    p = tmp_path / "broken.v"
    p.write_text(HEAD + "  assign O = A +;\nendmodule\n")
    with pytest.raises(VerilogError) as info:
        read_verilog(p)
    assert info.value.path == str(p) and info.value.line == 5


# -- writer ---------------------------------------------------------------------------------------------


def test_write_read_round_trip_for_every_builtin_design():
    specs = load_all()
    assert len(specs) >= 5
    for name, spec in specs.items():
        nl = spec.build()
        text = write_verilog(nl)
        assert text.startswith("//") and "endmodule" in text
        back = read_verilog(text, path=f"{name}.v")
        assert back.cell_counts() == nl.cell_counts(), name
        assert list(back.inputs) == ["A", "B"] and list(back.outputs) == ["O"]
        got = simulate(back, signed=spec.signed).table
        assert np.array_equal(got, spec.reference_table()), name


def test_writer_rejects_bad_port_names_and_uses_library_cells():
    from rtl_models.builder import Builder

    b = Builder("tiny-1")
    a, c = b.input("A", 1), b.input("B", 1)
    s, co = b.ha(a[0], c[0])
    b.output("O", [s, co, b.nand2(a[0], c[0]), 1])
    nl = b.finish()
    text = write_verilog(nl)
    assert "module tiny_1 (A, B, O);" in text and "HAX1" in text and "NAND2X1" in text and "1'b1" in text
    back = read_verilog(text)
    assert back.cell_counts() == nl.cell_counts()
    nl.inputs["my port"] = nl.inputs.pop("A")
    with pytest.raises(NetlistError, match="not a valid Verilog identifier"):
        write_verilog(nl)
