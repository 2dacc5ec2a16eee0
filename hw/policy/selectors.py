"""Flow selectors in hardware: the flow a packet belongs to and the selector
match that SPD rules and latch templates share (sim/selectors.py).

Addresses are 128 bits (IPv4 zero-extended in the low 32 bits), each
selector is ANY or an inclusive [lo, hi] range of one IP version (a prefix is
the range it covers); ports are ANY, OPAQUE (matches only a packet without
ports) or a range; protocol is ANY or one number.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Value
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


# address compares are cut into chunks this wide (short carry chains). 16
# bits: timing, 70f03fc's 25F report for the selectors (a 32-bit chunk's
# compare after the rule RAM's output register was five LUTs behind 3.8 ns
# of routing) and 9b8761d's for the PAD (-0.37 ns from its entry register)
CHUNK = 16


def _chunks(v, width):
    return [v[i:i + CHUNK] for i in range(0, width, CHUNK)]


def le_terms(a, b, width):
    """Per-chunk terms of a <= b: (lt, eq) of every chunk but the lowest, le of
    the lowest; combined by `le_combine`. Each term is one short compare."""
    ac, bc = _chunks(a, width), _chunks(b, width)
    terms = [ac[0] <= bc[0]]
    for x, y in zip(ac[1:], bc[1:]):
        terms += [x < y, x == y]
    return Cat(*terms)


def le_combine(t):
    r = t[0]
    for k in range(1, (len(t) + 1) // 2):
        r = t[2 * k - 1] | (t[2 * k] & r)
    return r


def selector_terms(sel, flow) -> Value:
    """Stage 1 of the selector match: a few dozen bits, each from one short
    compare of `sel` (selector_layout view) with `flow`. Registering them and
    combining in the next cycle (`terms_match`) keeps 128-bit compares out of
    a single clock period."""
    def addr(s, v6, a):
        return Cat(s.any, s.v6 == v6, le_terms(s.lo, a, 128), le_terms(a, s.hi, 128))

    def port(s, valid, p):
        # the two 16-bit compares are terms of their own (timing: no logic
        # after their carry chains in this stage); terms_match combines
        return Cat(s.any | (s.opaque & ~valid), ~s.opaque & valid, s.lo <= p, p <= s.hi)

    return Cat(addr(sel.local, flow.v6, flow.local), addr(sel.remote, flow.v6, flow.remote),
               sel.proto_any | (sel.proto == flow.proto),
               port(sel.local_port, flow.ports_valid, flow.local_port),
               port(sel.remote_port, flow.ports_valid, flow.remote_port))


ADDR_LE_TERMS = 1 + 2 * (128 // CHUNK - 1)    # le_terms' bits for one 128-bit bound
TERM_BITS = 2 * (2 + 2 * ADDR_LE_TERMS) + 1 + 2 * 4


def match_parts(t) -> Value:
    """Stage 2: the selector's parts from `selector_terms` bits, each a short
    combine: per address its ANY bit, its IP version with the low bound, and
    the high bound; the protocol; each port. Stage 3 (`match_all`) makes the
    match of them. (Timing: one AND tree of the terms, 41 bits with 32-bit
    chunks, in one clock period was 5 LUT levels; an address's whole test
    from its 16-bit chunks' terms was 5 LUTs and 2 to 3 ns of routing,
    d9f828d's 25F report.)"""
    n = ADDR_LE_TERMS

    def addr(a):
        return Cat(a[0], a[1] & le_combine(a[2:2 + n]), le_combine(a[2 + n:2 + 2 * n]))

    def port(p):
        return p[0] | (p[1] & p[2] & p[3])

    w = 2 + 2 * n
    return Cat(addr(t[:w]), addr(t[w:2 * w]), t[2 * w], port(t[2 * w + 1:2 * w + 5]),
               port(t[2 * w + 5:2 * w + 9]))


MATCH_PARTS = 9


def match_all(p) -> Value:
    """Stage 3: the selector covers the flow, from `match_parts` bits."""
    def addr(a):
        return a[0] | (a[1] & a[2])

    return addr(p[0:3]) & addr(p[3:6]) & p[6] & p[7] & p[8]


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
