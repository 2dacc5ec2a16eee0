"""The one packet-stream layout every latchnic datapath block speaks.

A packet is a run of beats from `first` to `last`. `data` is little-endian by
byte lane: byte 0 of the beat (the earliest byte on the wire) sits in
data[0:8]. `keep` marks valid lanes; only the last beat may be partial and its
valid lanes are contiguous from lane 0. Streams follow amaranth.lib.stream
rules: once `valid` is high, payload and valid hold until the transfer, and
`valid` never depends on `ready`.
"""

from amaranth.lib import data, stream


def packet_layout(width: int = 64) -> data.StructLayout:
    if width % 8:
        raise ValueError(f"stream width must be whole bytes, got {width} bits")
    return data.StructLayout({
        "data": width,
        "keep": width // 8,
        "first": 1,
        "last": 1,
    })


def packet_signature(width: int = 64) -> stream.Signature:
    return stream.Signature(packet_layout(width))
