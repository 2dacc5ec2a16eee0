"""Top-level wrappers the cocotb tests build (flat, AXI-named ports)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from latchnic.hw.axil import AxiLiteRegisters
from latchnic.hw.regmap import RegisterFile


def axil_top():
    return AxiLiteRegisters(RegisterFile())
