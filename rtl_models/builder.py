"""A netlist builder: gates with constant folding, and word-level blocks built from them.

Generators describe a design at full size and let constants fold: an AND with a constant 0
disappears, a full adder with a constant 0 input becomes a half adder, and so on. The area,
delay and power of a truncated or perforated design therefore come out of the same generator
as the exact one, without hand-pruned special cases.

Words are lists of nets, least significant bit first.
"""

from __future__ import annotations

from .netlist import CONST0, CONST1, Netlist

Word = list[int]


class Builder:
    """Builds a `Netlist` gate by gate, folding constants and trivial identities."""

    def __init__(self, name: str):
        self.nl = Netlist(name=name)

    # -- ports ----------------------------------------------------------------------------
    def input(self, name: str, width: int) -> Word:
        """Declare an input port."""
        return self.nl.add_input(name, width)

    def output(self, name: str, word: Word, width: int | None = None) -> None:
        """Declare an output port, zero-extending or checking `word` to `width`."""
        word = list(word)
        if width is not None and len(word) < width:
            word = word + [CONST0] * (width - len(word))
        self.nl.set_output(name, word, width)

    def finish(self) -> Netlist:
        """The finished netlist, with dead cells removed and checked."""
        nl = self.nl.pruned()
        nl.validate()
        return nl

    # -- single gates with folding --------------------------------------------------------
    @staticmethod
    def is_const(n: int) -> bool:
        """True for the constant nets."""
        return n in (CONST0, CONST1)

    def inv(self, a: int) -> int:
        """NOT a."""
        if a == CONST0:
            return CONST1
        if a == CONST1:
            return CONST0
        return self.nl.add_cell("INV", (a,))[0]

    def buf(self, a: int) -> int:
        """A buffer (kept: callers ask for one on purpose)."""
        return self.nl.add_cell("BUF", (a,))[0]

    def and2(self, a: int, b: int) -> int:
        """a AND b."""
        if a == CONST0 or b == CONST0:
            return CONST0
        if a == CONST1:
            return b
        if b == CONST1 or a == b:
            return a
        return self.nl.add_cell("AND2", (a, b))[0]

    def or2(self, a: int, b: int) -> int:
        """a OR b."""
        if a == CONST1 or b == CONST1:
            return CONST1
        if a == CONST0:
            return b
        if b == CONST0 or a == b:
            return a
        return self.nl.add_cell("OR2", (a, b))[0]

    def xor2(self, a: int, b: int) -> int:
        """a XOR b."""
        if a == CONST0:
            return b
        if b == CONST0:
            return a
        if a == CONST1:
            return self.inv(b)
        if b == CONST1:
            return self.inv(a)
        if a == b:
            return CONST0
        return self.nl.add_cell("XOR2", (a, b))[0]

    def nand2(self, a: int, b: int) -> int:
        """NOT (a AND b)."""
        if self.is_const(a) or self.is_const(b) or a == b:
            return self.inv(self.and2(a, b))
        return self.nl.add_cell("NAND2", (a, b))[0]

    def nor2(self, a: int, b: int) -> int:
        """NOT (a OR b)."""
        if self.is_const(a) or self.is_const(b) or a == b:
            return self.inv(self.or2(a, b))
        return self.nl.add_cell("NOR2", (a, b))[0]

    def xnor2(self, a: int, b: int) -> int:
        """NOT (a XOR b)."""
        if self.is_const(a) or self.is_const(b) or a == b:
            return self.inv(self.xor2(a, b))
        return self.nl.add_cell("XNOR2", (a, b))[0]

    def nand3(self, a: int, b: int, c: int) -> int:
        """NOT (a AND b AND c)."""
        if any(self.is_const(x) for x in (a, b, c)):
            return self.inv(self.and2(self.and2(a, b), c))
        return self.nl.add_cell("NAND3", (a, b, c))[0]

    def nor3(self, a: int, b: int, c: int) -> int:
        """NOT (a OR b OR c)."""
        if any(self.is_const(x) for x in (a, b, c)):
            return self.inv(self.or2(self.or2(a, b), c))
        return self.nl.add_cell("NOR3", (a, b, c))[0]

    def and3(self, a: int, b: int, c: int) -> int:
        """a AND b AND c."""
        return self.and2(self.and2(a, b), c)

    def or3(self, a: int, b: int, c: int) -> int:
        """a OR b OR c."""
        return self.or2(self.or2(a, b), c)

    def aoi21(self, a: int, b: int, c: int) -> int:
        """NOT ((a AND b) OR c)."""
        if any(self.is_const(x) for x in (a, b, c)):
            return self.inv(self.or2(self.and2(a, b), c))
        return self.nl.add_cell("AOI21", (a, b, c))[0]

    def oai21(self, a: int, b: int, c: int) -> int:
        """NOT ((a OR b) AND c)."""
        if any(self.is_const(x) for x in (a, b, c)):
            return self.inv(self.and2(self.or2(a, b), c))
        return self.nl.add_cell("OAI21", (a, b, c))[0]

    def mux2(self, sel: int, a: int, b: int) -> int:
        """sel ? b : a."""
        if sel == CONST0 or a == b:
            return a
        if sel == CONST1:
            return b
        if a == CONST0 and b == CONST1:
            return sel
        if a == CONST1 and b == CONST0:
            return self.inv(sel)
        if a == CONST0:
            return self.and2(sel, b)
        if b == CONST0:
            return self.and2(self.inv(sel), a)
        if b == CONST1:
            return self.or2(sel, a)
        if a == CONST1:
            return self.or2(self.inv(sel), b)
        return self.nl.add_cell("MUX2", (a, b, sel))[0]

    def ha(self, a: int, b: int) -> tuple[int, int]:
        """Half adder: (sum, carry)."""
        if a == CONST0:
            return b, CONST0
        if b == CONST0:
            return a, CONST0
        if a == CONST1:
            return self.inv(b), b
        if b == CONST1:
            return self.inv(a), a
        s, c = self.nl.add_cell("HA", (a, b))
        return s, c

    def fa(self, a: int, b: int, c: int) -> tuple[int, int]:
        """Full adder: (sum, carry)."""
        ins = [a, b, c]
        zeros = ins.count(CONST0)
        ones = ins.count(CONST1)
        var = [x for x in ins if not self.is_const(x)]
        if zeros + ones == 3:
            total = ones
            return (CONST1 if total & 1 else CONST0), (CONST1 if total >= 2 else CONST0)
        if zeros:
            # drop one zero: a half adder of the other two
            rest = list(ins)
            rest.remove(CONST0)
            return self.ha(rest[0], rest[1])
        if ones == 2:  # x + 1 + 1 = (x, 1)
            return var[0], CONST1
        if ones == 1:  # x + y + 1: sum = xnor, carry = or
            return self.xnor2(var[0], var[1]), self.or2(var[0], var[1])
        s, co = self.nl.add_cell("FA", (a, b, c))
        return s, co

    # -- word-level blocks --------------------------------------------------------------------
    def const_word(self, value: int, width: int) -> Word:
        """The constant `value` as `width` bits."""
        return [CONST1 if (value >> i) & 1 else CONST0 for i in range(width)]

    def ripple_add(self, x: Word, y: Word, cin: int = CONST0, width: int | None = None) -> Word:
        """x + y + cin, ripple-carry; result width max(len)+1 unless `width` truncates it."""
        n = max(len(x), len(y))
        x = list(x) + [CONST0] * (n - len(x))
        y = list(y) + [CONST0] * (n - len(y))
        out: Word = []
        carry = cin
        for i in range(n):
            s, carry = self.fa(x[i], y[i], carry)
            out.append(s)
        out.append(carry)
        return out[:width] if width is not None else out

    def negate(self, x: Word, width: int) -> Word:
        """Two's complement -x on `width` bits (x sign-extended by the caller)."""
        x = list(x) + [CONST0] * (width - len(x))
        return self.ripple_add([self.inv(b) for b in x[:width]], [], cin=CONST1, width=width)

    def mux_word(self, sel: int, a: Word, b: Word) -> Word:
        """sel ? b : a, bitwise; the shorter word is zero-extended."""
        n = max(len(a), len(b))
        a = list(a) + [CONST0] * (n - len(a))
        b = list(b) + [CONST0] * (n - len(b))
        return [self.mux2(sel, ai, bi) for ai, bi in zip(a, b)]

    def and_word(self, bit: int, x: Word) -> Word:
        """Each bit of x ANDed with `bit`."""
        return [self.and2(bit, xi) for xi in x]

    def or_reduce(self, bits: Word) -> int:
        """OR of all bits (a balanced tree)."""
        bits = [b for b in bits if b != CONST0]
        if not bits:
            return CONST0
        while len(bits) > 1:
            nxt = [self.or2(bits[i], bits[i + 1]) for i in range(0, len(bits) - 1, 2)]
            if len(bits) % 2:
                nxt.append(bits[-1])
            bits = nxt
        return bits[0]

    def shift_left(self, x: Word, amount: Word, width: int) -> Word:
        """x << amount (a logarithmic barrel shifter), truncated to `width` bits."""
        cur = list(x[:width]) + [CONST0] * (width - len(x[:width]))
        for k, s in enumerate(amount):
            step = 1 << k
            shifted = [CONST0] * min(step, width) + cur[: max(width - step, 0)]
            cur = self.mux_word(s, cur, shifted)[:width]
        return cur

    def shift_right(self, x: Word, amount: Word) -> Word:
        """x >> amount (a logarithmic barrel shifter), same width as x."""
        cur = list(x)
        n = len(cur)
        for k, s in enumerate(amount):
            step = 1 << k
            shifted = cur[step:] + [CONST0] * min(step, n)
            cur = self.mux_word(s, cur, shifted[:n])
        return cur

    def leading_one(self, x: Word) -> tuple[Word, Word, int]:
        """Leading-one detector: (one-hot of the highest set bit, its position in binary, x != 0)."""
        n = len(x)
        onehot: Word = [CONST0] * n
        higher_any = CONST0  # OR of bits above i
        for i in range(n - 1, -1, -1):
            onehot[i] = self.and2(x[i], self.inv(higher_any))
            higher_any = self.or2(higher_any, x[i])
        pos_bits = max(1, (n - 1).bit_length())
        position = [self.or_reduce([onehot[i] for i in range(n) if (i >> k) & 1]) for k in range(pos_bits)]
        return onehot, position, higher_any

    def reduce_columns(self, columns: list[Word], method: str = "dadda") -> tuple[Word, Word]:
        """Reduce a bit matrix (columns[w] = bits of weight 2^w) to two rows with FA/HA.

        `method` is "dadda" (Dadda's height sequence, fewest adders) or "wallace" (reduce as
        early as possible).
        """
        cols = [[b for b in col if b != CONST0] for col in columns]
        if method == "dadda":
            heights = [2]
            while heights[-1] < max((len(c) for c in cols), default=0):
                heights.append(heights[-1] * 3 // 2)
            for target in reversed(heights[:-1]):
                cols = self._dadda_stage(cols, target)
        elif method == "wallace":
            while max((len(c) for c in cols), default=0) > 2:
                cols = self._wallace_stage(cols)
        else:
            raise ValueError(f"reduce_columns: method must be 'dadda' or 'wallace', got {method!r}")
        row0 = [c[0] if len(c) > 0 else CONST0 for c in cols]
        row1 = [c[1] if len(c) > 1 else CONST0 for c in cols]
        return row0, row1

    def _dadda_stage(self, cols: list[Word], target: int) -> list[Word]:
        out: list[Word] = [[] for _ in range(len(cols) + 1)]
        carries_in: list[Word] = [[] for _ in range(len(cols) + 1)]
        for w in range(len(cols)):
            bits = list(cols[w])
            height = len(bits) + len(carries_in[w])
            while height > target:
                if height - target >= 2 and len(bits) >= 3:
                    s, c = self.fa(bits.pop(0), bits.pop(0), bits.pop(0))
                    height -= 2
                elif len(bits) >= 2:
                    s, c = self.ha(bits.pop(0), bits.pop(0))
                    height -= 1
                else:
                    break
                bits.append(s)
                carries_in[w + 1].append(c)
            out[w] = bits + carries_in[w]
        out[len(cols)] = carries_in[len(cols)]
        while out and not out[-1]:
            out.pop()
        return out

    def _wallace_stage(self, cols: list[Word]) -> list[Word]:
        out: list[Word] = [[] for _ in range(len(cols) + 1)]
        for w, col in enumerate(cols):
            bits = list(col)
            while len(bits) >= 3:
                s, c = self.fa(bits.pop(0), bits.pop(0), bits.pop(0))
                out[w].append(s)
                out[w + 1].append(c)
            if len(bits) == 2 and len(col) > 2:
                s, c = self.ha(bits.pop(0), bits.pop(0))
                out[w].append(s)
                out[w + 1].append(c)
            out[w].extend(bits)
        while out and not out[-1]:
            out.pop()
        return out

    def sum_columns(self, columns: list[Word], width: int, method: str = "dadda") -> Word:
        """Sum a bit matrix to a `width`-bit word: column reduction then a ripple-carry adder."""
        row0, row1 = self.reduce_columns(columns, method)
        total = self.ripple_add(row0, row1)
        return (total + [CONST0] * width)[:width]

    def array_sum_rows(self, rows: list[Word], width: int) -> Word:
        """Sum shifted rows (row r already includes its weight offset) as a carry-save array.

        This is the classic array multiplier structure: each row is added to the running
        carry-save pair with a line of full adders, and a ripple-carry adder resolves the last
        pair (a carry-propagate row).
        """
        sum_bits: Word = [CONST0] * width
        carry_bits: Word = [CONST0] * width
        for row in rows:
            row = list(row[:width]) + [CONST0] * (width - len(row[:width]))
            new_sum: Word = [CONST0] * width
            new_carry: Word = [CONST0] * width
            for w in range(width):
                s, c = self.fa(sum_bits[w], carry_bits[w], row[w])
                new_sum[w] = s
                if w + 1 < width:
                    new_carry[w + 1] = c
            sum_bits, carry_bits = new_sum, new_carry
        return self.ripple_add(sum_bits, carry_bits, width=width)
