"""Verilog reader and writer for the gate-level netlist subset EvoApprox uses.

Reading (`read_verilog`, `read_verilog_modules`, `parse_verilog`) accepts:

* module headers in ANSI (``module m(input [7:0] A, ...)``) or non-ANSI style
  (``module m(A, B, O); input [7:0] A; ...``), ``wire`` declarations of scalars and vectors
  (``wire [2031:0] N;``), comma lists;
* continuous ``assign`` statements on ``~ & | ^`` (plus ``~& ~| ~^``), parentheses, the
  ternary ``? :``, sized and unsized constants (``1'b0``, ``4'hF``, ``0``), concatenation and
  replication, bit and part selects, and vector ``+`` (built as a ripple-carry adder);
  widths follow Verilog's context rules (operands zero-extended to the widest of the
  expression and its target);
* cell instances with named (``.A(x)``) or positional connections, where a connection may
  itself be an expression (EvoApprox writes ``.B((A[1] & B[0]))``):
  - cells defined by modules in the same file (EvoApprox's ``PDKGEN*`` cells): a module whose
    function equals one of our `CELL_TYPES` (inputs and outputs in port order) becomes that
    cell; any other module is inlined;
  - the 45 nm library cells AND2X1, OR2X1, NAND2X1, NOR2X1, XOR2X1, XNOR2X1, INVX1, BUFX2,
    NAND3X1, NOR3X1, AOI21X1, OAI21X1, MUX2X1, HAX1, FAX1 (any drive strength ``X<n>``), with
    the pin names of EvoApprox's files: inputs A, B, C (S for the MUX2 select), outputs Y,
    and YS / YC (sum / carry) on HAX1 and FAX1. MUX2X1 is Y = S ? B : A, as EvoApprox's own
    PDKGENMUX2X1 model and C code define it. Positional connections list the inputs, then
    the outputs, in that order (A, B, C, YS, YC for FAX1).
  - EvoApprox8b's generic ``.v`` files name some cells with a search-and-replace accident
    (``XPDKGENOR2X1`` for XOR2X1, ``NPDKGEPDKGENNAND2X1`` for NAND2X1, ...) and do not
    define them; a name that is neither defined nor a library cell is looked up again with
    every ``PDKGEN`` removed, which recovers the library cell the matching ``_pdk45.v`` uses.

Expressions are mapped onto our cells the way a synthesis tool would for these shapes:
``~(a & b)`` -> NAND2, ``~(a | b)`` -> NOR2, ``~(a ^ b)`` -> XNOR2, ``~(a & b & c)`` -> NAND3,
``~(a | b | c)`` -> NOR3, ``~((a & b) | c)`` -> AOI21, ``~((a | b) & c)`` -> OAI21,
``(a & ~s) | (b & s)`` and ``s ? b : a`` -> MUX2, so imported area and power are meaningful.
Constants fold inside expressions; cell instances are kept as written (their area is real).

Pure connections (``assign N[41] = N[40];``) are aliases, not buffers.

Errors are `VerilogError` (a `NetlistError`): the message starts with ``path:line:`` and
names the offending token or net; `path`, `line`, `token` and `net` are attributes.

Writing (`write_verilog`) emits our netlists as structural Verilog over the 45 nm cell names
above (named connections), which `read_verilog` reads back to the same cells and product table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .builder import Builder
from .netlist import CELL_TYPES, CONST0, CONST1, Netlist, NetlistError


class VerilogError(NetlistError):
    """A Verilog syntax or elaboration error; the message starts with ``path:line:``."""

    def __init__(self, message: str, path: str = "<text>", line: int | None = None,
                 token: str | None = None, net: str | None = None):
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}", net=net)
        self.path = path
        self.line = line
        self.token = token
        self.reason = message


# ---------------------------------------------------------------------------------------
# 45 nm library cells: name -> (our kind, input pins, output pins), pins in our pin order.
LIB_CELLS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "AND2": ("AND2", ("A", "B"), ("Y",)),
    "OR2": ("OR2", ("A", "B"), ("Y",)),
    "NAND2": ("NAND2", ("A", "B"), ("Y",)),
    "NOR2": ("NOR2", ("A", "B"), ("Y",)),
    "XOR2": ("XOR2", ("A", "B"), ("Y",)),
    "XNOR2": ("XNOR2", ("A", "B"), ("Y",)),
    "INV": ("INV", ("A",), ("Y",)),
    "BUF": ("BUF", ("A",), ("Y",)),
    "NAND3": ("NAND3", ("A", "B", "C"), ("Y",)),
    "NOR3": ("NOR3", ("A", "B", "C"), ("Y",)),
    "AOI21": ("AOI21", ("A", "B", "C"), ("Y",)),
    "OAI21": ("OAI21", ("A", "B", "C"), ("Y",)),
    "MUX2": ("MUX2", ("A", "B", "S"), ("Y",)),
    "HA": ("HA", ("A", "B"), ("YS", "YC")),
    "FA": ("FA", ("A", "B", "C"), ("YS", "YC")),
}
# The names the writer uses (the 45 nm library's X1 cells, BUFX2 for the buffer).
WRITE_CELL_NAME: dict[str, str] = {k: (f"{k}X1" if k != "BUF" else "BUFX2") for k in LIB_CELLS}
_LIB_CELL_RE = re.compile(r"^(AND2|OR2|NAND2|NOR2|XOR2|XNOR2|INV|BUF|NAND3|NOR3|AOI21|OAI21|MUX2|HA|FA)X\d+$")


def library_cell(name: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(our kind, input pins, output pins) of a 45 nm library cell name, or None."""
    m = _LIB_CELL_RE.match(name)
    return LIB_CELLS[m.group(1)] if m else None


# ---------------------------------------------------------------------------------------
# Lexer
_TOKEN_RE = re.compile(
    r"""
    [ \t\r\f\v]*
    (?:
     (?P<id>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<op>[()\[\],;.=&|+?:{}#*\-!<>%@]|~[&|^]?|\^~?)
    |(?P<nl>\n)
    |(?P<num>\d[\d_]*(?:\s*'[sS]?[bBoOdDhH]\s*[0-9a-fA-F_xXzZ?]+)?|'[sS]?[bBoOdDhH]\s*[0-9a-fA-F_xXzZ?]+)
    |(?P<lcomment>//[^\n]*)
    |(?P<bcomment>/\*.*?\*/)
    |(?P<directive>`[^\n]*)
    |(?P<esc>\\\S+)
    |(?P<end>\Z)
    )
    """,
    re.X | re.S,
)

KEYWORDS = {"module", "endmodule", "input", "output", "inout", "wire", "reg", "assign", "signed",
            "supply0", "supply1", "tri", "parameter", "localparam", "always", "initial",
            "function", "task", "generate", "begin", "end"}


class Token(NamedTuple):
    """One lexical token: kind ('id', 'num', 'op', 'kw', 'eof'), text and line."""

    kind: str
    text: str
    line: int


def tokenize(text: str, path: str = "<text>") -> list[Token]:
    """Split Verilog source into tokens (comments and compiler directives dropped)."""
    tokens: list[Token] = []
    append = tokens.append
    line = 1
    pos = 0
    for m in _TOKEN_RE.finditer(text):
        if m.start() != pos:
            break
        pos = m.end()
        kind = m.lastgroup
        s = m.group(kind)
        if kind == "id":
            append(Token("kw" if s in KEYWORDS else "id", s, line))
        elif kind == "op":
            append(Token("op", s, line))
        elif kind == "nl":
            line += 1
        elif kind == "num":
            append(Token("num", s, line))
            line += s.count("\n")
        elif kind == "bcomment":
            line += s.count("\n")
        elif kind == "esc":
            append(Token("id", s[1:], line))
        elif kind == "end":
            break
    if pos != len(text):
        while text[pos] in " \t\r\f\v":
            pos += 1
        line = text.count("\n", 0, pos) + 1
        if text.startswith("/*", pos):
            raise VerilogError("unterminated /* comment", path, line, token="/*")
        bad = text[pos]
        raise VerilogError(f"unexpected character {bad!r}", path, line, token=bad)
    append(Token("eof", "", line))
    return tokens


# ---------------------------------------------------------------------------------------
# AST. Expressions are tuples whose first element is the node kind:
#   ("id", name, line) ("bit", name, index, line) ("part", name, msb, lsb, line)
#   ("const", value, width) ("un", op, x) ("bin", op, a, b) ("cat", items) ("rep", n, x)
#   ("tern", cond, a, b)


@dataclass
class Decl:
    """A declared signal: direction ('input', 'output', 'wire'), range and line."""

    name: str
    kind: str
    msb: int | None
    lsb: int | None
    line: int

    @property
    def width(self) -> int:
        return 1 if self.msb is None else abs(self.msb - self.lsb) + 1


@dataclass
class Assign:
    """A continuous assignment."""

    lhs: tuple
    rhs: tuple
    line: int


@dataclass
class Instance:
    """A cell or module instance with named or positional connections."""

    cell: str
    name: str
    named: dict[str, tuple | None] | None
    positional: list[tuple | None] | None
    line: int


@dataclass
class Module:
    """One parsed module."""

    name: str
    ports: list[str]
    decls: dict[str, Decl] = field(default_factory=dict)
    assigns: list[Assign] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    line: int = 0

    def inputs(self) -> list[Decl]:
        """Input declarations in port order."""
        return [self.decls[p] for p in self.ports if self.decls[p].kind == "input"]

    def outputs(self) -> list[Decl]:
        """Output declarations in port order."""
        return [self.decls[p] for p in self.ports if self.decls[p].kind == "output"]


@dataclass
class VerilogFile:
    """All modules of one source, in file order."""

    path: str
    modules: dict[str, Module]

    def instantiated(self) -> set[str]:
        """Names of modules instantiated by another module of the file."""
        return {inst.cell for m in self.modules.values() for inst in m.instances if inst.cell in self.modules}

    def top_name(self, top: str | None = None) -> str:
        """The top module: `top` if given, else the one module no other module instantiates.

        Uninstantiated modules whose ports are all scalar (unused cell definitions such as an
        unreferenced PDKGENXOR2X1) do not compete for the top.
        """
        if top is not None:
            if top not in self.modules:
                raise VerilogError(f"top module {top!r} not found (modules: {', '.join(self.modules)})",
                                   self.path, None, token=top)
            return top
        if not self.modules:
            raise VerilogError("no module found", self.path, None)
        used = self.instantiated()
        cands = [n for n in self.modules if n not in used]
        if len(cands) > 1:
            wide = [n for n in cands if any(self.modules[n].decls[p].width > 1 for p in self.modules[n].ports)]
            if wide:
                cands = wide
        if len(cands) != 1:
            raise VerilogError(
                f"cannot pick the top module: {', '.join(cands) or 'every module is instantiated'}; "
                "name it with top=", self.path, None)
        return cands[0]


class _Parser:
    def __init__(self, tokens: list[Token], path: str):
        self.toks = tokens
        self.i = 0
        self.path = path

    # -- helpers ------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, msg: str, tok: Token | None = None) -> VerilogError:
        tok = tok or self.tok
        shown = tok.text if tok.kind != "eof" else "end of file"
        return VerilogError(f"{msg} (at {shown!r})", self.path, tok.line, token=tok.text)

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, text: str) -> Token | None:
        if self.tok.text == text and self.tok.kind in ("op", "kw"):
            return self.next()
        return None

    def expect(self, text: str, what: str | None = None) -> Token:
        if self.tok.text == text and self.tok.kind in ("op", "kw"):
            return self.next()
        raise self.error(f"expected {what or repr(text)}")

    def ident(self, what: str = "an identifier") -> Token:
        if self.tok.kind != "id":
            raise self.error(f"expected {what}")
        return self.next()

    def const_int(self) -> int:
        t = self.tok
        if t.kind != "num":
            raise self.error("expected a constant index")
        value, _ = parse_number(t.text, self.path, t.line)
        self.next()
        return value

    # -- file / module ------------------------------------------------------------------
    def parse_file(self) -> VerilogFile:
        modules: dict[str, Module] = {}
        while self.tok.kind != "eof":
            if self.tok.text == "module" and self.tok.kind == "kw":
                m = self.parse_module()
                if m.name in modules:
                    raise VerilogError(f"module {m.name!r} defined twice", self.path, m.line, token=m.name)
                modules[m.name] = m
            else:
                raise self.error("expected 'module'")
        return VerilogFile(self.path, modules)

    def parse_module(self) -> Module:
        line = self.expect("module").line
        name = self.ident("a module name").text
        mod = Module(name, [], line=line)
        if self.tok.text == "#":
            raise self.error("module parameters are not supported")
        if self.accept("("):
            if not self.accept(")"):
                self.parse_port_list(mod)
                self.expect(")")
        self.expect(";")
        while not (self.tok.kind == "kw" and self.tok.text == "endmodule"):
            if self.tok.kind == "eof":
                raise self.error(f"missing 'endmodule' for module {name!r}")
            self.parse_item(mod)
        self.next()
        for p in mod.ports:
            d = mod.decls.get(p)
            if d is None or d.kind not in ("input", "output"):
                raise VerilogError(f"port {p!r} of module {name!r} has no input/output declaration",
                                   self.path, line, token=p, net=p)
        return mod

    def reject_signed(self) -> None:
        # Our arithmetic zero-extends; reading a signed declaration would silently change `+`.
        if self.tok.kind == "kw" and self.tok.text == "signed":
            raise self.error("'signed' declarations are not supported (vector + is built unsigned)")

    def parse_range(self) -> tuple[int | None, int | None]:
        if not self.accept("["):
            return None, None
        msb = self.const_int()
        self.expect(":")
        lsb = self.const_int()
        self.expect("]")
        return msb, lsb

    def parse_port_list(self, mod: Module) -> None:
        direction = None
        msb = lsb = None
        while True:
            t = self.tok
            if t.kind == "kw" and t.text in ("input", "output", "inout"):
                if t.text == "inout":
                    raise self.error("inout ports are not supported")
                direction = self.next().text
                self.accept("wire") or self.accept("reg")
                self.reject_signed()
                msb, lsb = self.parse_range()
            name_tok = self.ident("a port name")
            mod.ports.append(name_tok.text)
            if direction is not None:
                self.declare(mod, Decl(name_tok.text, direction, msb, lsb, name_tok.line), name_tok)
            if not self.accept(","):
                break

    def declare(self, mod: Module, d: Decl, tok: Token) -> None:
        old = mod.decls.get(d.name)
        if old is not None:
            # `output [15:0] O; wire [15:0] O;` is legal: the wire adds nothing.
            if d.kind == "wire" and old.kind in ("input", "output") and d.width == old.width:
                return
            if old.kind == "wire" and d.kind in ("input", "output") and d.width == old.width:
                old.kind = d.kind
                return
            raise VerilogError(f"{d.name!r} declared twice (first at line {old.line})", self.path, tok.line,
                               token=d.name, net=d.name)
        mod.decls[d.name] = d

    def parse_item(self, mod: Module) -> None:
        t = self.tok
        if t.kind == "kw" and t.text in ("input", "output", "wire", "reg", "inout", "tri"):
            kind = self.next().text
            if kind == "inout":
                raise self.error("inout ports are not supported", t)
            if kind in ("reg", "tri"):
                kind = "wire"
            if kind in ("input", "output"):
                self.accept("wire") or self.accept("reg")
            self.reject_signed()
            msb, lsb = self.parse_range()
            while True:
                nt = self.ident("a signal name")
                if kind in ("input", "output") and nt.text not in mod.ports:
                    raise VerilogError(f"{kind} {nt.text!r} is not in the port list of module {mod.name!r}",
                                       self.path, nt.line, token=nt.text, net=nt.text)
                self.declare(mod, Decl(nt.text, kind, msb, lsb, nt.line), nt)
                if kind == "wire" and self.accept("="):
                    rhs = self.parse_expr()
                    mod.assigns.append(Assign(("id", nt.text, nt.line), rhs, nt.line))
                if not self.accept(","):
                    break
            self.expect(";")
        elif t.kind == "kw" and t.text == "assign":
            self.next()
            while True:
                lt = self.tok
                lhs = self.parse_lvalue()
                self.expect("=")
                rhs = self.parse_expr()
                mod.assigns.append(Assign(lhs, rhs, lt.line))
                if not self.accept(","):
                    break
            self.expect(";")
        elif t.kind == "id":
            self.parse_instance(mod)
        elif t.kind == "kw":
            raise self.error(f"unsupported construct {t.text!r}")
        else:
            raise self.error("unexpected token")

    def parse_instance(self, mod: Module) -> None:
        cell_tok = self.next()
        if self.tok.text == "#":
            raise self.error("instance parameters are not supported")
        while True:
            name_tok = self.ident("an instance name")
            self.expect("(")
            named: dict[str, tuple | None] | None = None
            positional: list[tuple | None] | None = None
            if self.tok.text == ".":
                named = {}
                while True:
                    self.expect(".")
                    pin = self.ident("a pin name")
                    self.expect("(")
                    expr = None if self.tok.text == ")" else self.parse_expr()
                    self.expect(")")
                    if pin.text in named:
                        raise VerilogError(f"pin {pin.text!r} of instance {name_tok.text!r} connected twice",
                                           self.path, pin.line, token=pin.text)
                    named[pin.text] = expr
                    if not self.accept(","):
                        break
            elif self.tok.text != ")":
                positional = []
                while True:
                    positional.append(None if self.tok.text in (",", ")") else self.parse_expr())
                    if not self.accept(","):
                        break
            else:
                positional = []
            self.expect(")")
            mod.instances.append(Instance(cell_tok.text, name_tok.text, named, positional, cell_tok.line))
            if not self.accept(","):
                break
        self.expect(";")

    # -- expressions --------------------------------------------------------------------
    def parse_lvalue(self) -> tuple:
        if self.tok.text == "{":
            self.next()
            items = [self.parse_lvalue()]
            while self.accept(","):
                items.append(self.parse_lvalue())
            self.expect("}")
            return ("cat", tuple(items))
        return self.parse_ref()

    def parse_ref(self) -> tuple:
        nt = self.ident("a signal name")
        if self.accept("["):
            hi = self.const_int()
            if self.accept(":"):
                lo = self.const_int()
                self.expect("]")
                return ("part", nt.text, hi, lo, nt.line)
            self.expect("]")
            return ("bit", nt.text, hi, nt.line)
        return ("id", nt.text, nt.line)

    _ENDS = frozenset((")", ",", ";", "}"))

    def parse_expr(self) -> tuple:
        # Fast path for the common plain connection: `name` or `name[3]` followed by ) , ; }
        toks, i = self.toks, self.i
        t = toks[i]
        if t.kind == "id":
            n1 = toks[i + 1]
            if n1.kind == "op":
                if n1.text in self._ENDS:
                    self.i = i + 1
                    return ("id", t.text, t.line)
                if n1.text == "[" and len(toks) > i + 4 and toks[i + 2].kind == "num" and toks[i + 3].text == "]" \
                        and toks[i + 4].kind == "op" and toks[i + 4].text in self._ENDS:
                    self.i = i + 4
                    value, _ = parse_number(toks[i + 2].text, self.path, toks[i + 2].line)
                    return ("bit", t.text, value, t.line)
        cond = self.parse_binary(0)
        if self.accept("?"):
            a = self.parse_expr()
            self.expect(":")
            b = self.parse_expr()
            return ("tern", cond, a, b)
        return cond

    # Verilog binary precedence, lowest first (only the operators we build are listed).
    _LEVELS = (("|",), ("^", "~^", "^~"), ("&",), ("+",))

    def parse_binary(self, level: int) -> tuple:
        if level == len(self._LEVELS):
            return self.parse_unary()
        left = self.parse_binary(level + 1)
        while self.tok.kind == "op" and self.tok.text in self._LEVELS[level]:
            op = self.next().text
            right = self.parse_binary(level + 1)
            if op in ("~^", "^~"):
                left = ("un", "~", ("bin", "^", left, right))
            else:
                left = ("bin", op, left, right)
        if self.tok.kind == "op" and self.tok.text in ("-", "*", "/", "%", "<", ">", "!", "&&", "||", "==", "<<", ">>"):
            raise self.error(f"unsupported operator {self.tok.text!r}")
        return left

    def parse_unary(self) -> tuple:
        t = self.tok
        if t.kind == "op" and t.text == "~":
            self.next()
            return ("un", "~", self.parse_unary())
        if t.kind == "op" and t.text in ("&", "|", "^", "~&", "~|", "~^"):
            self.next()
            x = ("red", t.text.lstrip("~"), self.parse_unary())
            return ("un", "~", x) if t.text.startswith("~") else x
        if t.kind == "op" and t.text in ("!", "-"):
            raise self.error(f"unsupported operator {t.text!r}")
        return self.parse_primary()

    def parse_primary(self) -> tuple:
        t = self.tok
        if t.kind == "num":
            self.next()
            value, width = parse_number(t.text, self.path, t.line)
            return ("const", value, width)
        if t.kind == "id":
            return self.parse_ref()
        if t.text == "(" and t.kind == "op":
            self.next()
            e = self.parse_expr()
            self.expect(")")
            return e
        if t.text == "{" and t.kind == "op":
            self.next()
            first = self.parse_expr()
            if self.tok.text == "{" and first[0] == "const":
                self.next()
                items = [self.parse_expr()]
                while self.accept(","):
                    items.append(self.parse_expr())
                self.expect("}")
                self.expect("}")
                return ("rep", first[1], ("cat", tuple(items)))
            items = [first]
            while self.accept(","):
                items.append(self.parse_expr())
            self.expect("}")
            return ("cat", tuple(items))
        raise self.error("expected an expression")


def parse_number(text: str, path: str = "<text>", line: int | None = None) -> tuple[int, int]:
    """(value, width) of a Verilog number; unsized numbers are 32 bits wide."""
    s = text.replace("_", "").replace(" ", "").replace("\t", "")
    if "'" not in s:
        return int(s), 32
    size, rest = s.split("'", 1)
    rest = rest.lstrip("sS")
    base = {"b": 2, "o": 8, "d": 10, "h": 16}[rest[0].lower()]
    digits = rest[1:]
    if any(c in "xXzZ?" for c in digits):
        raise VerilogError(f"x/z digits are not supported in constant {text!r}", path, line, token=text)
    value = int(digits, base)
    width = int(size) if size else 32
    if width < 1:
        raise VerilogError(f"constant {text!r} has zero width", path, line, token=text)
    return value & ((1 << width) - 1), width


def parse_verilog(source: str | Path, path: str | None = None) -> VerilogFile:
    """Parse Verilog text or a file into modules (no elaboration)."""
    text, label = _read_source(source, path)
    return _Parser(tokenize(text, label), label).parse_file()


def _read_source(source: str | Path, path: str | None) -> tuple[str, str]:
    if isinstance(source, Path):
        return source.read_text(encoding="utf-8", errors="replace"), path or str(source)
    if "\n" not in source and len(source) < 4096 and source.strip() and not source.lstrip().startswith("module"):
        p = Path(source)
        if p.is_file():
            return p.read_text(encoding="utf-8", errors="replace"), path or str(p)
        if p.suffix in (".v", ".sv", ".vh") and ";" not in source:
            raise VerilogError("no such file", str(p), None, token=str(p))
    return source, path or "<text>"


# ---------------------------------------------------------------------------------------
# Elaboration


def _strip_lines(e):
    """An expression without line numbers, for structural comparison."""
    k = e[0]
    if k == "id":
        return ("id", e[1])
    if k == "bit":
        return ("bit", e[1], e[2])
    if k == "part":
        return ("part", e[1], e[2], e[3])
    if k in ("const",):
        return e
    if k in ("un", "red"):
        return (k, e[1], _strip_lines(e[2]))
    if k == "bin":
        return ("bin", e[1], _strip_lines(e[2]), _strip_lines(e[3]))
    if k == "cat":
        return ("cat", tuple(_strip_lines(x) for x in e[1]))
    if k == "rep":
        return ("rep", e[1], _strip_lines(e[2]))
    if k == "tern":
        return ("tern",) + tuple(_strip_lines(x) for x in e[1:])
    raise AssertionError(k)


def _is_not(e) -> bool:
    return e[0] == "un" and e[1] == "~"


def _is_bin(e, op: str) -> bool:
    return e[0] == "bin" and e[1] == op


def _flatten(e, op: str) -> list:
    """Operands of a chain of the same associative operator."""
    if _is_bin(e, op):
        return _flatten(e[2], op) + _flatten(e[3], op)
    return [e]


@dataclass
class _Signal:
    name: str
    decl: Decl
    nets: list[int]  # placeholder nets, LSB (least significant) first

    def pos(self, index: int) -> int:
        d = self.decl
        if d.msb is None:
            return 0 if index == 0 else -1
        return index - d.lsb if d.msb >= d.lsb else d.lsb - index

    def bit_name(self, pos: int) -> str:
        d = self.decl
        if d.msb is None:
            return self.name
        idx = d.lsb + pos if d.msb >= d.lsb else d.lsb - pos
        return f"{self.name}[{idx}]"


# Python models of our cells for the truth-table match of user modules.
_CELL_FUNCS = {
    "AND2": lambda a, b: (a & b,),
    "OR2": lambda a, b: (a | b,),
    "XOR2": lambda a, b: (a ^ b,),
    "NAND2": lambda a, b: (1 - (a & b),),
    "NOR2": lambda a, b: (1 - (a | b),),
    "XNOR2": lambda a, b: (1 - (a ^ b),),
    "INV": lambda a: (1 - a,),
    "BUF": lambda a: (a,),
    "NAND3": lambda a, b, c: (1 - (a & b & c),),
    "NOR3": lambda a, b, c: (1 - (a | b | c),),
    "AOI21": lambda a, b, c: (1 - ((a & b) | c),),
    "OAI21": lambda a, b, c: (1 - ((a | b) & c),),
    "MUX2": lambda a, b, s: (b if s else a,),
    "HA": lambda a, b: (a ^ b, a & b),
    "FA": lambda a, b, c: (a ^ b ^ c, (a & b) | (a & c) | (b & c)),
}


def eval_netlist_bits(nl: Netlist, inputs: dict[int, int]) -> dict[int, int]:
    """Plain-Python evaluation of a netlist on one input vector (net id -> 0/1); for tiny netlists."""
    val = {CONST0: 0, CONST1: 1, **inputs}
    for ci in nl.topological_order():
        c = nl.cells[ci]
        outs = _CELL_FUNCS[c.kind](*(val[n] for n in c.ins))
        for n, v in zip(c.outs, outs):
            val[n] = v
    return val


class _Elaborator:
    """Builds one flat Netlist for a top module, inlining or mapping submodule instances."""

    MAX_DEPTH = 32

    def __init__(self, vfile: VerilogFile):
        self.vf = vfile
        self.path = vfile.path
        self.b = Builder("raw")
        self.nl = self.b.nl
        # per raw net: driver description (line) / alias target / name / first read line
        self.driver: dict[int, tuple[str, int]] = {}
        self.alias: dict[int, int] = {}
        self.first_read: dict[int, int] = {}
        self.cell_of_module: dict[str, str | None] = {}

    def err(self, msg: str, line: int | None, token: str | None = None, net: str | None = None) -> VerilogError:
        return VerilogError(msg, self.path, line, token=token, net=net)

    # -- module-as-cell detection ------------------------------------------------------------
    def module_cell_kind(self, name: str) -> str | None:
        """Our cell type if module `name` computes exactly that cell (ports in order), else None."""
        if name in self.cell_of_module:
            return self.cell_of_module[name]
        self.cell_of_module[name] = None  # guards recursion
        mod = self.vf.modules[name]
        ins, outs = mod.inputs(), mod.outputs()
        kind = None
        if 1 <= len(ins) <= 3 and 1 <= len(outs) <= 2 and all(d.width == 1 for d in ins + outs):
            sub = _Elaborator(self.vf)
            sub.cell_of_module = self.cell_of_module
            nl = sub.elaborate_top(name)
            in_nets = [nl.inputs[d.name][0] for d in ins]
            out_nets = [nl.outputs[d.name][0] for d in outs]
            rows = []
            for v in range(1 << len(ins)):
                bits = [(v >> k) & 1 for k in range(len(ins))]
                val = eval_netlist_bits(nl, dict(zip(in_nets, bits)))
                rows.append((tuple(bits), tuple(val[n] for n in out_nets)))
            for cand, ct in CELL_TYPES.items():
                if len(ct.inputs) != len(ins) or len(ct.outputs) != len(outs):
                    continue
                if all(_CELL_FUNCS[cand](*bits) == res for bits, res in rows):
                    kind = cand
                    break
        self.cell_of_module[name] = kind
        return kind

    # -- driving and reading placeholders ------------------------------------------------------
    def drive(self, net: int, what: str, line: int, name: str) -> None:
        if net in (CONST0, CONST1):
            raise self.err(f"cannot drive a constant ({what})", line)
        old = self.driver.get(net)
        if old is not None:
            raise self.err(f"net {name!r} has multiple drivers (line {old[1]}: {old[0]}; line {line}: {what})",
                           line, token=name, net=name)
        self.driver[net] = (what, line)

    def read(self, net: int, line: int) -> int:
        self.first_read.setdefault(net, line)
        return net

    def peek(self, net: int) -> int:
        """The net `net` is an alias of so far (loops are left for `resolve` to report)."""
        for _ in range(len(self.alias) + 1):
            nxt = self.alias.get(net)
            if nxt is None:
                return net
            net = nxt
        return net

    # -- scopes -------------------------------------------------------------------------------
    def make_scope(self, mod: Module, prefix: str) -> dict[str, _Signal]:
        scope: dict[str, _Signal] = {}
        for d in mod.decls.values():
            nets = [self.nl.add_net() for _ in range(d.width)]
            sig = _Signal(d.name, d, nets)
            for p, n in enumerate(nets):
                self.nl.net_names[n] = prefix + sig.bit_name(p)
            scope[d.name] = sig
        return scope

    def signal(self, scope: dict[str, _Signal], name: str, line: int, prefix: str) -> _Signal:
        sig = scope.get(name)
        if sig is None:
            # Verilog declares undeclared identifiers as scalar wires (implicit nets); an
            # implicit net nobody drives is reported as undriven where it is read.
            d = Decl(name, "wire", None, None, line)
            n = self.nl.add_net(prefix + name)
            sig = scope[name] = _Signal(name, d, [n])
        return sig

    def ref_bits(self, e, scope, prefix) -> list[int]:
        """Placeholder nets (LSB first) of an id / bit select / part select."""
        k = e[0]
        sig = self.signal(scope, e[1], e[-1], prefix)
        if k == "id":
            return list(sig.nets)
        if k == "bit":
            p = sig.pos(e[2])
            if not 0 <= p < len(sig.nets):
                raise self.err(f"bit {e[1]}[{e[2]}] is out of range of {sig.decl.width}-bit {e[1]!r}",
                               e[-1], token=f"{e[1]}[{e[2]}]", net=e[1])
            return [sig.nets[p]]
        hi, lo = sig.pos(e[2]), sig.pos(e[3])
        for p, idx in ((hi, e[2]), (lo, e[3])):
            if not 0 <= p < len(sig.nets):
                raise self.err(f"bit {e[1]}[{idx}] is out of range of {sig.decl.width}-bit {e[1]!r}",
                               e[-1], token=f"{e[1]}[{idx}]", net=e[1])
        if hi < lo:
            raise self.err(f"part select {e[1]}[{e[2]}:{e[3]}] runs against the declared direction",
                           e[-1], token=f"{e[1]}[{e[2]}:{e[3]}]", net=e[1])
        return sig.nets[lo:hi + 1]

    def lvalue_bits(self, e, scope, prefix, line) -> list[int]:
        if e[0] == "cat":
            bits: list[int] = []
            for item in reversed(e[1]):  # {msb_part, ..., lsb_part}
                bits.extend(self.lvalue_bits(item, scope, prefix, line))
            return bits
        if e[0] in ("id", "bit", "part"):
            sig = self.signal(scope, e[1], e[-1], prefix)
            if sig.decl.kind == "input":
                raise self.err(f"cannot assign to input {e[1]!r}", line, token=e[1], net=e[1])
            return self.ref_bits(e, scope, prefix)
        raise self.err("the target of an assignment or output pin must be a net", line)

    # -- expression widths and lowering ----------------------------------------------------------
    def self_width(self, e, scope, prefix) -> int:
        k = e[0]
        if k in ("id", "bit", "part"):
            return len(self.ref_bits(e, scope, prefix))
        if k == "const":
            return e[2]
        if k == "un":
            return self.self_width(e[2], scope, prefix)
        if k == "red":
            return 1
        if k == "bin":
            return max(self.self_width(e[2], scope, prefix), self.self_width(e[3], scope, prefix))
        if k == "cat":
            return sum(self.self_width(x, scope, prefix) for x in e[1])
        if k == "rep":
            return e[1] * self.self_width(e[2], scope, prefix)
        if k == "tern":
            return max(self.self_width(e[2], scope, prefix), self.self_width(e[3], scope, prefix))
        raise AssertionError(k)

    def lower(self, e, width: int, scope, prefix, line) -> list[int]:
        """Nets (LSB first, exactly `width` of them) computing expression `e` in a `width`-bit context."""
        b = self.b
        k = e[0]
        if k in ("id", "bit", "part"):
            # Follow aliases known so far, so constants assigned earlier fold into gates.
            bits = [self.peek(self.read(n, line)) for n in self.ref_bits(e, scope, prefix)]
            return (bits + [CONST0] * width)[:width]
        if k == "const":
            v, w = e[1], e[2]
            return [CONST1 if (i < w and (v >> i) & 1) else CONST0 for i in range(width)]
        if k == "cat":
            bits = []
            for item in reversed(e[1]):
                bits.extend(self.lower(item, self.self_width(item, scope, prefix), scope, prefix, line))
            return (bits + [CONST0] * width)[:width]
        if k == "rep":
            inner = self.lower(e[2], self.self_width(e[2], scope, prefix), scope, prefix, line)
            bits = inner * e[1]
            return (bits + [CONST0] * width)[:width]
        if k == "red":
            x = self.lower(e[2], self.self_width(e[2], scope, prefix), scope, prefix, line)
            fn = {"&": b.and2, "|": b.or2, "^": b.xor2}[e[1]]
            acc = x[0]
            for n in x[1:]:
                acc = fn(acc, n)
            return ([acc] + [CONST0] * width)[:width]
        if k == "tern":
            cw = self.self_width(e[1], scope, prefix)
            c = self.lower(e[1], cw, scope, prefix, line)
            sel = c[0]
            for n in c[1:]:
                sel = b.or2(sel, n)
            a = self.lower(e[2], width, scope, prefix, line)
            bb = self.lower(e[3], width, scope, prefix, line)
            return [b.mux2(sel, f, t) for t, f in zip(a, bb)]  # cond ? a : b
        if k == "un":  # "~"
            x = e[2]
            if _is_bin(x, "&"):
                ops = _flatten(x, "&")
                if len(ops) == 3:
                    p, q, r = (self.lower(o, width, scope, prefix, line) for o in ops)
                    return [b.nand3(*t) for t in zip(p, q, r)]
                if len(ops) == 2:
                    left, right = x[2], x[3]
                    for orp, other in ((left, right), (right, left)):
                        if _is_bin(orp, "|") and len(_flatten(orp, "|")) == 2:
                            p = self.lower(orp[2], width, scope, prefix, line)
                            q = self.lower(orp[3], width, scope, prefix, line)
                            r = self.lower(other, width, scope, prefix, line)
                            return [b.oai21(*t) for t in zip(p, q, r)]
                    p = self.lower(left, width, scope, prefix, line)
                    q = self.lower(right, width, scope, prefix, line)
                    return [b.nand2(u, v) for u, v in zip(p, q)]
            if _is_bin(x, "|"):
                ops = _flatten(x, "|")
                if len(ops) == 3 and not any(_is_bin(o, "&") for o in ops):
                    p, q, r = (self.lower(o, width, scope, prefix, line) for o in ops)
                    return [b.nor3(*t) for t in zip(p, q, r)]
                if len(ops) == 2 or len(ops) == 3:
                    left, right = x[2], x[3]
                    for andp, other in ((left, right), (right, left)):
                        if _is_bin(andp, "&") and len(_flatten(andp, "&")) == 2:
                            p = self.lower(andp[2], width, scope, prefix, line)
                            q = self.lower(andp[3], width, scope, prefix, line)
                            r = self.lower(other, width, scope, prefix, line)
                            return [b.aoi21(*t) for t in zip(p, q, r)]
                    if len(ops) == 2:
                        p = self.lower(left, width, scope, prefix, line)
                        q = self.lower(right, width, scope, prefix, line)
                        return [b.nor2(u, v) for u, v in zip(p, q)]
            if _is_bin(x, "^") and len(_flatten(x, "^")) == 2:
                p = self.lower(x[2], width, scope, prefix, line)
                q = self.lower(x[3], width, scope, prefix, line)
                return [b.xnor2(u, v) for u, v in zip(p, q)]
            return [b.inv(n) for n in self.lower(x, width, scope, prefix, line)]
        if k == "bin":
            op = e[1]
            if op == "|":
                m = self._match_mux(e)
                if m is not None:
                    s_e, a_e, b_e = m
                    s = self.lower(s_e, width, scope, prefix, line)
                    a = self.lower(a_e, width, scope, prefix, line)
                    bb = self.lower(b_e, width, scope, prefix, line)
                    return [b.mux2(si, ai, bi) for si, ai, bi in zip(s, a, bb)]
            if op == "+":
                p = self.lower(e[2], width, scope, prefix, line)
                q = self.lower(e[3], width, scope, prefix, line)
                return b.ripple_add(p, q, width=width)
            fn = {"&": b.and2, "|": b.or2, "^": b.xor2}[op]
            p = self.lower(e[2], width, scope, prefix, line)
            q = self.lower(e[3], width, scope, prefix, line)
            return [fn(u, v) for u, v in zip(p, q)]
        raise AssertionError(k)

    @staticmethod
    def _match_mux(e):
        """(s, a, b) if e is (a & ~s) | (b & s) in any operand order, else None."""
        left, right = e[2], e[3]
        if not (_is_bin(left, "&") and _is_bin(right, "&")):
            return None
        for l_ops in ((left[2], left[3]), (left[3], left[2])):
            for r_ops in ((right[2], right[3]), (right[3], right[2])):
                (la, lx), (rb, rx) = l_ops, r_ops
                # left = la & lx, right = rb & rx; one of lx/rx is ~s, the other s
                if _is_not(lx) and _strip_lines(lx[2]) == _strip_lines(rx):
                    return rx, la, rb  # left active when s = 0
                if _is_not(rx) and _strip_lines(rx[2]) == _strip_lines(lx):
                    return lx, rb, la
        return None

    # -- elaboration -------------------------------------------------------------------------------
    def elaborate_top(self, top: str) -> Netlist:
        mod = self.vf.modules[top]
        scope = self.make_scope(mod, "")
        for d in mod.inputs():
            for n in scope[d.name].nets:
                self.driver[n] = (f"input port {d.name!r}", d.line)
        self.elaborate_body(mod, scope, "", 0)
        return self.finish(mod, scope)

    def elaborate_body(self, mod: Module, scope: dict[str, _Signal], prefix: str, depth: int) -> None:
        for a in mod.assigns:
            lhs = self.lvalue_bits(a.lhs, scope, prefix, a.line)
            width = max(len(lhs), self.self_width(a.rhs, scope, prefix))
            rhs = self.lower(a.rhs, width, scope, prefix, a.line)
            for n, src in zip(lhs, rhs):
                name = self.nl.net_names[n]
                self.drive(n, "assign", a.line, name)
                self.alias[n] = self.read(src, a.line)
        for inst in mod.instances:
            self.elaborate_instance(inst, scope, prefix, depth)

    def _connections(self, inst: Instance, pins: list[str], prefix: str) -> dict[str, tuple | None]:
        label = prefix + inst.name
        if inst.named is not None:
            for pin in inst.named:
                if pin not in pins:
                    raise self.err(f"cell {inst.cell!r} (instance {label!r}) has no pin {pin!r} "
                                   f"(pins: {', '.join(pins)})", inst.line, token=pin)
            return dict(inst.named)
        pos = inst.positional or []
        if len(pos) > len(pins):
            raise self.err(f"instance {label!r} of {inst.cell!r} connects {len(pos)} pins, the cell has "
                           f"{len(pins)} ({', '.join(pins)})", inst.line, token=inst.name)
        return {p: (pos[i] if i < len(pos) else None) for i, p in enumerate(pins)}

    def _input_net(self, expr, pin: str, inst: Instance, scope, prefix) -> int:
        if expr is None:
            raise self.err(f"input pin {pin!r} of instance {prefix + inst.name!r} ({inst.cell}) is unconnected",
                           inst.line, token=pin)
        w = self.self_width(expr, scope, prefix)
        if w != 1 and expr[0] != "const":
            raise self.err(f"width mismatch on pin {pin!r} of instance {prefix + inst.name!r}: "
                           f"1 bit expected, {w} connected", inst.line, token=pin)
        return self.read(self.lower(expr, 1, scope, prefix, inst.line)[0], inst.line)

    def _output_net(self, expr, pin: str, inst: Instance, scope, prefix) -> int:
        if expr is None:
            return self.nl.add_net(f"{prefix}{inst.name}.{pin}")
        bits = self.lvalue_bits(expr, scope, prefix, inst.line)
        if len(bits) != 1:
            raise self.err(f"width mismatch on pin {pin!r} of instance {prefix + inst.name!r}: "
                           f"1 bit expected, {len(bits)} connected", inst.line, token=pin)
        n = bits[0]
        self.drive(n, f"pin {pin} of {inst.cell} {prefix + inst.name}", inst.line, self.nl.net_names[n])
        return n

    def elaborate_instance(self, inst: Instance, scope, prefix: str, depth: int) -> None:
        label = prefix + inst.name
        if inst.cell in self.vf.modules:
            sub = self.vf.modules[inst.cell]
            kind = self.module_cell_kind(inst.cell)
            if kind is not None:
                in_pins = [d.name for d in sub.inputs()]
                out_pins = [d.name for d in sub.outputs()]
                self._add_cell(kind, inst, in_pins, out_pins, sub.ports, scope, prefix)
            else:
                self.inline(sub, inst, scope, prefix, depth)
            return
        lib = library_cell(inst.cell)
        if lib is None:
            demangled = inst.cell
            while "PDKGEN" in demangled:
                demangled = demangled.replace("PDKGEN", "", 1)
            lib = library_cell(demangled) if demangled != inst.cell else None
        if lib is None:
            raise self.err(f"unknown cell {inst.cell!r} (instance {label!r}): not a module of this file "
                           f"nor a 45 nm library cell", inst.line, token=inst.cell)
        kind, in_pins, out_pins = lib
        self._add_cell(kind, inst, list(in_pins), list(out_pins), list(in_pins) + list(out_pins), scope, prefix)

    def _add_cell(self, kind, inst, in_pins, out_pins, order, scope, prefix) -> None:
        conns = self._connections(inst, order, prefix)
        ins = [self._input_net(conns.get(p), p, inst, scope, prefix) for p in in_pins]
        outs = [self._output_net(conns.get(p), p, inst, scope, prefix) for p in out_pins]
        self.nl.add_cell(kind, ins, outs=outs, name=prefix + inst.name)

    def inline(self, sub: Module, inst: Instance, scope, prefix: str, depth: int) -> None:
        if depth >= self.MAX_DEPTH:
            raise self.err(f"module hierarchy deeper than {self.MAX_DEPTH} at instance {prefix + inst.name!r} "
                           f"(recursive instantiation of {sub.name!r}?)", inst.line, token=inst.name)
        conns = self._connections(inst, sub.ports, prefix)
        sub_prefix = f"{prefix}{inst.name}/"
        sub_scope = self.make_scope(sub, sub_prefix)
        for d in sub.inputs():
            expr = conns.get(d.name)
            nets = sub_scope[d.name].nets
            if expr is None:
                raise self.err(f"input port {d.name!r} of instance {prefix + inst.name!r} ({sub.name}) is "
                               "unconnected", inst.line, token=d.name)
            w = self.self_width(expr, scope, prefix)
            if w != len(nets) and expr[0] != "const":
                raise self.err(f"width mismatch on port {d.name!r} of instance {prefix + inst.name!r}: "
                               f"{len(nets)} bits expected, {w} connected", inst.line, token=d.name)
            src = self.lower(expr, len(nets), scope, prefix, inst.line)
            for n, s in zip(nets, src):
                self.drive(n, f"port of {prefix + inst.name}", inst.line, self.nl.net_names[n])
                self.alias[n] = self.read(s, inst.line)
        self.elaborate_body(sub, sub_scope, sub_prefix, depth + 1)
        for d in sub.outputs():
            expr = conns.get(d.name)
            if expr is None:
                continue
            bits = self.lvalue_bits(expr, scope, prefix, inst.line)
            nets = sub_scope[d.name].nets
            if len(bits) != len(nets):
                raise self.err(f"width mismatch on port {d.name!r} of instance {prefix + inst.name!r}: "
                               f"{len(nets)} bits driven, {len(bits)} connected", inst.line, token=d.name)
            for n, s in zip(bits, nets):
                self.drive(n, f"port {d.name} of {prefix + inst.name}", inst.line, self.nl.net_names[n])
                self.alias[n] = self.read(s, inst.line)

    # -- resolution ------------------------------------------------------------------------------
    def resolve(self, n: int) -> int:
        seen = []
        while n in self.alias:
            if n in seen:
                loop = self.nl.net_names[n]
                raise self.err(f"combinational loop through net {loop!r} (assignments form a cycle)",
                               self.driver.get(n, ("", None))[1], token=loop, net=loop)
            seen.append(n)
            n = self.alias[n]
        for s in seen:  # path compression
            self.alias[s] = n
        return n

    def finish(self, mod: Module, scope: dict[str, _Signal]) -> Netlist:
        raw = self.nl
        driven = set(self.driver) | {o for c in raw.cells for o in c.outs} | {CONST0, CONST1}
        # Every net that is read must resolve to a constant, an input or a cell output.
        for n, line in sorted(self.first_read.items(), key=lambda kv: kv[1]):
            r = self.resolve(n)
            if r not in driven:
                name = raw.net_names[r]
                raise self.err(f"net {name!r} is undriven (read at line {line})", line, token=name, net=name)
        for d in mod.outputs():
            sig = scope[d.name]
            for p, n in enumerate(sig.nets):
                r = self.resolve(n)
                if r not in driven:
                    name = sig.bit_name(p)
                    raise self.err(f"output {name!r} is undriven", d.line, token=name, net=name)
        out = Netlist(name=mod.name)
        new_id: dict[int, int] = {CONST0: CONST0, CONST1: CONST1}
        for d in mod.inputs():
            nets = out.add_input(d.name, d.width)
            for old, new in zip(scope[d.name].nets, nets):
                new_id[old] = new
        # Name each driven net after the first signal that is an alias of it.
        best_name: dict[int, str] = {}
        for n in range(2, raw.n_nets):
            if n in self.alias:
                best_name.setdefault(self.resolve(n), raw.net_names[n])

        def net(old: int) -> int:
            r = self.resolve(old)
            nid = new_id.get(r)
            if nid is None:
                name = raw.net_names[r]
                if re.fullmatch(r"n\d+", name) and r in best_name:
                    name = best_name[r]
                nid = new_id[r] = out.add_net(name)
            return nid

        for c in raw.cells:
            ins = [net(i) for i in c.ins]
            outs = [net(o) for o in c.outs]
            out.add_cell(c.kind, ins, outs=outs, name=c.name)
        for d in mod.outputs():
            out.set_output(d.name, [net(n) for n in scope[d.name].nets], d.width)
        try:
            out.validate()
        except NetlistError as exc:
            line = None
            if exc.net is not None:
                for n, nm in enumerate(raw.net_names):
                    if nm == exc.net and n in self.driver:
                        line = self.driver[n][1]
                        break
            raise VerilogError(str(exc), self.path, line, token=exc.net, net=exc.net) from exc
        return out


def read_verilog(source: str | Path, top: str | None = None, path: str | None = None) -> Netlist:
    """Read Verilog text or a file and return the top module as a flat `Netlist`."""
    vf = parse_verilog(source, path)
    return _Elaborator(vf).elaborate_top(vf.top_name(top))


def read_verilog_modules(source: str | Path, path: str | None = None) -> dict[str, Netlist]:
    """Every module of a Verilog source as its own flat `Netlist`, in file order."""
    vf = parse_verilog(source, path)
    return {name: _Elaborator(vf).elaborate_top(name) for name in vf.modules}


def normalize_ports(nl: Netlist) -> Netlist:
    """The netlist with its two 8-bit inputs named A, B (declaration order) and its one output O.

    Returns `nl` itself when the ports already are A, B and O.
    """
    if set(nl.inputs) == {"A", "B"} and list(nl.outputs) == ["O"]:
        return nl
    if len(nl.outputs) != 1:
        raise NetlistError(f"netlist {nl.name!r} has {len(nl.outputs)} output ports "
                           f"({', '.join(nl.outputs)}); expected one product port")
    if set(nl.inputs) == {"A", "B"}:
        inputs = dict(nl.inputs)
    elif len(nl.inputs) == 2:
        (n0, a), (n1, b) = nl.inputs.items()
        inputs = {"A": a, "B": b}
    else:
        raise NetlistError(f"netlist {nl.name!r} has input ports {', '.join(nl.inputs)}; expected A and B")
    (_, o), = nl.outputs.items()
    return Netlist(name=nl.name, net_names=list(nl.net_names), inputs={k: list(v) for k, v in inputs.items()},
                   outputs={"O": list(o)}, cells=list(nl.cells))


# ---------------------------------------------------------------------------------------
# Writer

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def _verilog_ident(name: str, what: str) -> str:
    if not _IDENT_RE.match(name) or name in KEYWORDS:
        raise NetlistError(f"{what} {name!r} is not a valid Verilog identifier", net=name)
    return name


def _module_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_$]", "_", name) or "netlist"
    if not re.match(r"[A-Za-z_]", s) or s in KEYWORDS:
        s = "m_" + s
    return s


def write_verilog(netlist: Netlist, module_name: str | None = None) -> str:
    """Structural Verilog of a netlist over the 45 nm cell names (AND2X1 ... FAX1)."""
    nl = netlist
    nl.validate()
    mname = _module_name(module_name or nl.name)
    ports = list(nl.inputs) + list(nl.outputs)
    for p in ports:
        _verilog_ident(p, "port name")
        if re.fullmatch(r"n_\d+", p):
            raise NetlistError(f"port name {p!r} collides with the writer's internal net names", net=p)
    ref: dict[int, str] = {CONST0: "1'b0", CONST1: "1'b1"}
    for pname, nets in nl.inputs.items():
        for i, n in enumerate(nets):
            ref[n] = f"{pname}[{i}]" if len(nets) > 1 else pname
    wires: list[str] = []

    def r(n: int) -> str:
        s = ref.get(n)
        if s is None:
            s = ref[n] = f"n_{n}"
            wires.append(s)
        return s

    body: list[str] = []
    for k, c in enumerate(nl.cells):
        kind, in_pins, out_pins = LIB_CELLS[c.kind]
        conns = [f".{p}({r(n)})" for p, n in zip(in_pins, c.ins)]
        conns += [f".{p}({r(n)})" for p, n in zip(out_pins, c.outs)]
        body.append(f"  {WRITE_CELL_NAME[c.kind]} U{k} ({', '.join(conns)});")
    assigns: list[str] = []
    for pname, nets in nl.outputs.items():
        for i, n in enumerate(nets):
            lhs = f"{pname}[{i}]" if len(nets) > 1 else pname
            assigns.append(f"  assign {lhs} = {r(n)};")
    lines = [
        f"// {mname}: structural netlist written by cosim (rtl_models.verilog.write_verilog)",
        f"// cells: {len(nl.cells)}; 45 nm cell names; HAX1/FAX1 outputs YS (sum), YC (carry);",
        "// MUX2X1: Y = S ? B : A",
        f"module {mname} ({', '.join(ports)});",
    ]
    for pname, nets in nl.inputs.items():
        lines.append(f"  input {f'[{len(nets) - 1}:0] ' if len(nets) > 1 else ''}{pname};")
    for pname, nets in nl.outputs.items():
        lines.append(f"  output {f'[{len(nets) - 1}:0] ' if len(nets) > 1 else ''}{pname};")
    for i in range(0, len(wires), 16):
        lines.append("  wire " + ", ".join(wires[i:i + 16]) + ";")
    lines += body + assigns + ["endmodule", ""]
    return "\n".join(lines)
