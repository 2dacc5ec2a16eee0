"""The crypto path between the policy core's two inbound passes, played in
Python for the differential test: ICV verification and decapsulation with
the reference model's own ESP/AH functions (sim/esp.py, sim/ah.py) and the
SA's key, giving what hw/crypto's decap path hands back to the core: the
DecapStatus and the inner frame (docs/policy-core.md, "Inbound second pass").
"""

from __future__ import annotations

from latchnic.hw.policy.core import DecapStatus
from latchnic.sim import ah, esp
from latchnic.sim.drops import Drop
from latchnic.sim.packet import (IPPROTO_ESP, IPPROTO_IPIP, IPPROTO_IPV6, join_transport,
                                 parse_frame, with_ethertype)


def decap(sa, frame: bytes, seq: int) -> tuple[DecapStatus, bytes]:
    """(status, inner frame) for an ESP/AH frame the core's first pass sent
    on with SA `sa` (a sim SaState: keys and mode) and full sequence number
    `seq`. A frame refused by the crypto path carries its L2 header only."""
    pkt = parse_frame(frame)
    off = pkt.payload_off
    data = frame[off:pkt.l3_end]
    l2 = frame[:pkt.l2_len]
    try:
        if pkt.proto == IPPROTO_ESP:
            clear = esp.open_(sa, data, seq)
        else:
            n = ah.ah_len(pkt.version)
            ah.verify(sa, pkt.version, frame[pkt.l3:off], data[:n], data[n:], seq)
    except Drop as d:
        if d.reason == "icv":
            return DecapStatus.ICV_FAIL, l2
        assert d.reason == "malformed", d       # what the decap path refuses before the ICV
        return DecapStatus.MALFORMED, l2
    if pkt.proto == IPPROTO_ESP:
        try:
            inner, nh = esp.strip_trailer(clear)
        except Drop:
            return DecapStatus.BAD_PADDING, l2
    else:
        inner, nh = data[n:], data[0]
    if sa.spec.mode == "tunnel":
        if nh not in (IPPROTO_IPIP, IPPROTO_IPV6):
            return DecapStatus.BAD_INNER, l2
        version = 4 if nh == IPPROTO_IPIP else 6
        if inner and inner[0] >> 4 != version:
            return DecapStatus.BAD_INNER, l2
        return DecapStatus.OK, with_ethertype(l2, version) + inner
    return DecapStatus.OK, l2 + join_transport(pkt, bytearray(frame[pkt.l3:off]), nh, inner)
