"""Flow selectors in hardware: the flow a packet belongs to and the selector
match that SPD rules and latch templates share (sim/selectors.py).

Addresses are 128 bits (IPv4 zero-extended in the low 32 bits), each
selector is ANY or an inclusive [lo, hi] range of one IP version (a prefix is
the range it covers); ports are ANY, OPAQUE (matches only a packet without
ports) or a range; protocol is ANY or one number.
"""

from __future__ import annotations

from amaranth.hdl import Signal
from amaranth.lib import data

flow_layout = data.StructLayout({
    "v6": 1,
    "local": 128,
    "remote": 128,
    "proto": 8,
    "ports_valid": 1,      # 0: ports OPAQUE (non-first fragment, not TCP/UDP)
    "local_port": 16,
    "remote_port": 16,
})

addr_sel_layout = data.StructLayout({"any": 1, "v6": 1, "lo": 128, "hi": 128})
port_sel_layout = data.StructLayout({"any": 1, "opaque": 1, "lo": 16, "hi": 16})

selector_layout = data.StructLayout({
    "local": addr_sel_layout,
    "remote": addr_sel_layout,
    "proto_any": 1,
    "proto": 8,
    "local_port": port_sel_layout,
    "remote_port": port_sel_layout,
})


def selector_match(m, sel, flow, name="sel_match") -> Signal:
    """A signal: does selector `sel` (selector_layout view) cover `flow`?"""
    def addr(s, v6, a):
        return s.any | ((s.v6 == v6) & (s.lo <= a) & (a <= s.hi))

    def port(s, valid, p):
        return s.any | (s.opaque & ~valid) | (~s.opaque & valid & (s.lo <= p) & (p <= s.hi))

    hit = Signal(name=name)
    m.d.comb += hit.eq(addr(sel.local, flow.v6, flow.local) & addr(sel.remote, flow.v6, flow.remote)
                       & (sel.proto_any | (sel.proto == flow.proto))
                       & port(sel.local_port, flow.ports_valid, flow.local_port)
                       & port(sel.remote_port, flow.ports_valid, flow.remote_port))
    return hit


# ------------------------------------------------------------ host side

def pack(layout: data.StructLayout, values: dict) -> int:
    """Pack a (nested) dict into the integer a layout describes."""
    out = 0
    for name, field in layout:
        if name not in values:
            continue
        v = values[name]
        if isinstance(field.shape, data.StructLayout):
            v = pack(field.shape, v)
        assert 0 <= int(v) < (1 << field.width), (name, v)
        out |= int(v) << field.offset
    return out


def unpack(layout: data.StructLayout, value: int) -> dict:
    out = {}
    for name, field in layout:
        v = (value >> field.offset) & ((1 << field.width) - 1)
        out[name] = unpack(field.shape, v) if isinstance(field.shape, data.StructLayout) else v
    return out


def encode_addr(sel) -> dict:
    if sel is None:
        return {"any": 1}
    return {"v6": int(sel.version == 6), "lo": sel.lo, "hi": sel.hi}


def encode_port(sel) -> dict:
    if sel is None:
        return {"any": 1}
    if sel.opaque:
        return {"opaque": 1}
    return {"lo": sel.lo, "hi": sel.hi}


def encode_selectors(sel) -> dict:
    """An SpdRule or Template (latchnic.config) as selector_layout values."""
    return {"local": encode_addr(sel.local), "remote": encode_addr(sel.remote),
            "proto_any": int(sel.proto is None), "proto": sel.proto or 0,
            "local_port": encode_port(sel.local_port), "remote_port": encode_port(sel.remote_port)}


def encode_flow(flow) -> dict:
    """A latchnic.sim.selectors.Flow as flow_layout values."""
    return {"v6": int(flow.version == 6), "local": flow.local, "remote": flow.remote,
            "proto": flow.proto, "ports_valid": int(flow.local_port is not None),
            "local_port": flow.local_port or 0, "remote_port": flow.remote_port or 0}
