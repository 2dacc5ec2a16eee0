"""AXI4-Lite slave in front of the generated register decoder.

Flat, AXI-named ports (`s_axil_awaddr`, ...) so that cocotbext-axi's
AxiLiteBus.from_prefix(dut, "s_axil") and a vendor interconnect find them.
One access at a time: a write waits for both AW and W, then answers on B; a
read answers on R once the decoder's registered read data is there
(`RegBus.r_valid`, READ_LATENCY cycles after the request). An address
without a register answers SLVERR (read data 0). Reads and writes alternate
when both are pending, so neither can starve the other. The accepted
address, data and strobes are registered (timing: no path from the AXI
inputs and the owner's `hold` through the address decode into the
registers) and stay on the bus ADDR_SETUP cycles (state SETUP*) before
w_en / r_en, for the register file's registered decode.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .regmap import ADDR_BITS, ADDR_SETUP, RegBus

OKAY, SLVERR = 0b00, 0b10


def axil_members(prefix="s_axil", addr_bits=ADDR_BITS):
    p = prefix + "_"
    return {
        p + "awaddr": In(addr_bits), p + "awvalid": In(1), p + "awready": Out(1),
        p + "wdata": In(32), p + "wstrb": In(4), p + "wvalid": In(1), p + "wready": Out(1),
        p + "bresp": Out(2), p + "bvalid": Out(1), p + "bready": In(1),
        p + "araddr": In(addr_bits), p + "arvalid": In(1), p + "arready": Out(1),
        p + "rdata": Out(32), p + "rresp": Out(2), p + "rvalid": Out(1), p + "rready": In(1),
    }


class AxiLiteSlave(wiring.Component):
    """AXI4-Lite (flat ports) to RegBus (`bus`, out)."""

    def __init__(self, prefix="s_axil"):
        self._p = prefix + "_"
        super().__init__({**axil_members(prefix), "bus": Out(RegBus()), "hold": In(1)})

    def _s(self, name):
        return getattr(self, self._p + name)

    def elaborate(self, platform):
        m = Module()
        s, bus = self._s, self.bus
        last_was_read = Signal()
        err = Signal()
        addr = Signal.like(bus.addr)
        data = Signal.like(bus.w_data)
        strb = Signal.like(bus.w_strb)

        # the request's address, data and strobes reach the register file
        # from their registers in every state (timing: no FSM decode in front
        # of the address decoder and the read muxes); w_en / r_en say when
        m.d.comb += [bus.addr.eq(addr), bus.w_data.eq(data), bus.w_strb.eq(strb)]
        # w_en / r_en are flip-flops too, high in WRITE / READ (timing: they
        # reach some 600 CEs and read registers, no state decode before that)
        w_en, r_en = Signal(), Signal()
        m.d.comb += [bus.w_en.eq(w_en), bus.r_en.eq(r_en)]
        m.d.sync += [w_en.eq(0), r_en.eq(0)]

        assert ADDR_SETUP >= 1
        # `hold`: the register file's owner is busy (a table commit is being
        # applied); no new access starts until it is done. The owner raises
        # it, registered, from the previous write's strobe (set at its w_en):
        # high two cycles after WRITE, the earliest IDLE can accept again
        # (WRITE -> WRESP -> IDLE); the SETUP states come after the check
        pick_w = s("awvalid") & s("wvalid") & (~s("arvalid") | last_was_read)
        take_w = pick_w & ~self.hold
        take_r = s("arvalid") & ~pick_w & ~self.hold
        # state == IDLE, a flip-flop written with the state (timing: the
        # ready outputs are one or two LUTs of flip-flops and the inputs)
        in_idle = Signal(init=1)
        m.d.comb += [s("awready").eq(in_idle & take_w), s("wready").eq(in_idle & take_w),
                     s("arready").eq(in_idle & take_r)]
        # while idle the request's registers follow the inputs, so what is
        # there when an access is accepted stays (timing: their enable is
        # `in_idle`, not the acceptance with `hold` in it)
        with m.If(in_idle):
            m.d.sync += [addr.eq(Mux(pick_w, s("awaddr"), s("araddr"))), data.eq(s("wdata")),
                         strb.eq(s("wstrb"))]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(take_w):
                    m.d.sync += [last_was_read.eq(0), in_idle.eq(0)]
                    m.next = "SETUP0"
                with m.Elif(take_r):
                    m.d.sync += [last_was_read.eq(1), in_idle.eq(0)]
                    m.next = "SETUP0"
            for i in range(ADDR_SETUP):
                # the request is on the bus; the register file decodes it
                with m.State(f"SETUP{i}"):
                    if i + 1 < ADDR_SETUP:
                        m.next = f"SETUP{i + 1}"
                    else:
                        with m.If(last_was_read):
                            m.d.sync += r_en.eq(1)
                            m.next = "READ"
                        with m.Else():
                            m.d.sync += w_en.eq(1)
                            m.next = "WRITE"
            with m.State("WRITE"):
                m.d.sync += [s("bresp").eq(Mux(bus.err, SLVERR, OKAY)), s("bvalid").eq(1)]
                m.next = "WRESP"
            with m.State("READ"):
                m.d.sync += err.eq(bus.err)
                m.next = "RDATA"
            with m.State("WRESP"):
                with m.If(s("bready")):
                    m.d.sync += [s("bvalid").eq(0), in_idle.eq(1)]
                    m.next = "IDLE"
            with m.State("RDATA"):
                # wait for the decoder's read data; hold it in the R channel
                with m.If(bus.r_valid):
                    m.d.sync += [s("rdata").eq(Mux(err, 0, bus.r_data)),
                                 s("rresp").eq(Mux(err, SLVERR, OKAY)), s("rvalid").eq(1)]
                    m.next = "RRESP"
            with m.State("RRESP"):
                with m.If(s("rready")):
                    m.d.sync += [s("rvalid").eq(0), in_idle.eq(1)]
                    m.next = "IDLE"
        return m


class AxiLiteRegisters(wiring.Component):
    """AxiLiteSlave + RegisterFile: AXI ports plus the register file's
    datapath-side ports (same names as RegisterFile's)."""

    def __init__(self, regfile):
        self.regfile = regfile
        self.slave = AxiLiteSlave()
        members = dict(axil_members())
        members["hold"] = In(1)
        for name, member in regfile.signature.members.items():
            if name != "bus":
                members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.slave = self.slave
        m.submodules.regfile = self.regfile
        wiring.connect(m, self.slave.bus, self.regfile.bus)
        for name, member in self.signature.members.items():
            if name.startswith("s_axil_") or name == "hold":
                a, b = getattr(self, name), getattr(self.slave, name)
                m.d.comb += (b.eq(a) if member.flow == In else a.eq(b))
            else:
                a, b = getattr(self, name), getattr(self.regfile, name)
                m.d.comb += (b.eq(a) if member.flow == In else a.eq(b))
        return m
