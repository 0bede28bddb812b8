"""Netlist structure checks: each error names the offending net."""

import pytest

from rtl_models.builder import Builder
from rtl_models.netlist import CONST0, Netlist, NetlistError


def small() -> Netlist:
    nl = Netlist("t")
    a = nl.add_input("A", 2)
    (y,) = nl.add_cell("AND2", (a[0], a[1]))
    nl.set_output("O", [y])
    return nl


def test_valid_netlist_orders_and_validates():
    nl = small()
    nl.validate()
    assert nl.topological_order() == [0]


def test_undriven_net_is_named():
    nl = Netlist("t")
    a = nl.add_input("A", 1)
    floating = nl.add_net("floaty")
    (y,) = nl.add_cell("OR2", (a[0], floating))
    nl.set_output("O", [y])
    with pytest.raises(NetlistError, match="floaty.*undriven") as e:
        nl.validate()
    assert e.value.net == "floaty"


def test_undriven_output_is_named():
    nl = Netlist("t")
    nl.add_input("A", 1)
    dangling = nl.add_net("dangling")
    nl.set_output("O", [dangling])
    with pytest.raises(NetlistError, match="dangling"):
        nl.validate()


def test_multiple_drivers_named():
    nl = Netlist("t")
    a = nl.add_input("A", 2)
    y = nl.add_net("shared")
    nl.add_cell("AND2", (a[0], a[1]), outs=(y,))
    nl.add_cell("OR2", (a[0], a[1]), outs=(y,))
    nl.set_output("O", [y])
    with pytest.raises(NetlistError, match="shared.*multiple drivers") as e:
        nl.validate()
    assert e.value.net == "shared"


def test_cell_driving_an_input_is_a_multiple_driver():
    nl = Netlist("t")
    a = nl.add_input("A", 2)
    nl.add_cell("INV", (a[0],), outs=(a[1],))
    nl.set_output("O", [a[1]])
    with pytest.raises(NetlistError, match=r"A\[1\].*multiple drivers"):
        nl.validate()


def test_combinational_loop_named():
    nl = Netlist("t")
    a = nl.add_input("A", 1)
    x = nl.add_net("loop_x")
    y = nl.add_net("loop_y")
    nl.add_cell("AND2", (a[0], y), outs=(x,))
    nl.add_cell("INV", (x,), outs=(y,))
    nl.set_output("O", [x])
    with pytest.raises(NetlistError, match="combinational loop") as e:
        nl.validate()
    assert e.value.net in ("loop_x", "loop_y")


def test_width_mismatch_on_cell_and_port():
    nl = Netlist("t")
    a = nl.add_input("A", 3)
    with pytest.raises(NetlistError, match="width mismatch.*AND2 takes 2"):
        nl.add_cell("AND2", (a[0], a[1], a[2]))
    with pytest.raises(NetlistError, match="width mismatch on output port 'O'"):
        nl.set_output("O", a, width=16)
    with pytest.raises(NetlistError, match="unknown cell type"):
        nl.add_cell("AND7", (a[0],))


def test_pruned_removes_dead_cells():
    nl = small()
    a = nl.inputs["A"]
    nl.add_cell("XOR2", (a[0], a[1]))  # drives nothing
    assert len(nl.cells) == 2
    assert len(nl.pruned().cells) == 1


def test_builder_folds_constants():
    b = Builder("fold")
    a = b.input("A", 2)
    assert b.and2(a[0], CONST0) == CONST0
    assert b.xor2(a[0], CONST0) == a[0]
    s, c = b.fa(a[0], a[1], CONST0)  # becomes a half adder
    assert [cell.kind for cell in b.nl.cells] == ["HA"]
    assert b.fa(CONST0, CONST0, a[0]) == (a[0], CONST0)
