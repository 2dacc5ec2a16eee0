"""Classic libpcap files (DLT_EN10MB), read and written by hand: the format
is a 24-byte header and 16-byte record headers, and the model must not lean
on scapy (the outside check). Timestamps are kept as integer nanoseconds so
that a frame's time survives the round trip exactly."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1


class PcapError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    time_ns: int
    frame: bytes
    orig_len: int


def read_pcap(path) -> tuple[list[Record], bool]:
    """All records of a pcap file, and whether it had nanosecond timestamps."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PcapError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) < 24:
        raise PcapError(f"{path}: not a pcap file (shorter than its header)")
    for endian in "<>":
        (magic,) = struct.unpack_from(endian + "I", data)
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise PcapError(f"{path}: not a classic pcap file (magic {data[:4].hex()}; pcapng is not supported)")
    nanos = magic == MAGIC_NS
    _, _vmaj, _vmin, _tz, _sig, _snap, linktype = struct.unpack_from(endian + "IHHiIII", data)
    if linktype & 0xFFFF != LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: link type {linktype} is not Ethernet (DLT_EN10MB)")
    records, off = [], 24
    rec = struct.Struct(endian + "IIII")
    while off < len(data):
        if off + 16 > len(data):
            raise PcapError(f"{path}: truncated record header at byte {off}")
        sec, frac, incl, orig = rec.unpack_from(data, off)
        off += 16
        if off + incl > len(data):
            raise PcapError(f"{path}: record {len(records)} runs past the end of the file")
        t = sec * 1_000_000_000 + (frac if nanos else frac * 1000)
        records.append(Record(t, data[off:off + incl], orig))
        off += incl
    return records, nanos


class PcapWriter:
    def __init__(self, path, nanos: bool = False, snaplen: int = 262144):
        self.path = Path(path)
        self.nanos = nanos
        self._f = open(self.path, "wb")
        self._f.write(struct.pack("<IHHiIII", MAGIC_NS if nanos else MAGIC_US, 2, 4, 0, 0,
                                  snaplen, LINKTYPE_ETHERNET))

    def write(self, time_ns: int, frame: bytes):
        sec, rem = divmod(time_ns, 1_000_000_000)
        frac = rem if self.nanos else rem // 1000
        self._f.write(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
