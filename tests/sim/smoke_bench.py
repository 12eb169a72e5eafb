"""cocotb bench for the ``smoke_top`` registered adder built by ``test_smoke.py``.

Checks ``o == a + b`` (9 bits, no wrap) one clock edge after driving ``a`` and ``b``.
"""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def registered_adder(dut):
    rng = random.Random(1234)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    dut.a.value = 0
    dut.b.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert int(dut.o.value) == 0, f"after reset o = {int(dut.o.value)}, expected 0"

    pairs = [(0, 0), (255, 255), (255, 1)] + [(rng.randrange(256), rng.randrange(256))
                                              for _ in range(47)]
    for a, b in pairs:
        await RisingEdge(dut.clk)  # leave the read-only phase before writing
        dut.a.value = a
        dut.b.value = b
        await RisingEdge(dut.clk)
        await ReadOnly()
        got = int(dut.o.value)
        assert got == a + b, f"{a} + {b}: o = {got}, expected {a + b}"
