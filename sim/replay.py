"""Inbound anti-replay window (RFC 4303 section 3.4.3 and appendix A).

The window is checked before the ICV and updated only after the ICV verified,
so a forged packet can neither be accepted nor move the window.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF


class ReplayWindow:
    def __init__(self, size: int, esn: bool, top: int = 0):
        self.size = size
        self.esn = esn
        self.top = top                          # highest authenticated sequence number
        self.bitmap = 1 if top else 0           # bit i set: top - i was received

    def infer(self, seq_low: int) -> int | None:
        """The full 64-bit number a received low half stands for (RFC 4303
        A2.2); the low half itself without ESN. None when it cannot be valid."""
        if not self.esn:
            return seq_low
        tl, th = self.top & MASK32, self.top >> 32
        w = self.size
        if tl >= w - 1:
            seq_high = th if seq_low >= tl - w + 1 else th + 1
        else:
            seq_high = th - 1 if seq_low >= (tl - w + 1) & MASK32 else th
        if seq_high < 0 or seq_high > MASK32:
            return None
        return (seq_high << 32) | seq_low

    def check(self, seq: int) -> bool:
        """May a packet with this full sequence number be accepted (pre-ICV)?"""
        if seq == 0:
            return False                        # never sent: counters start at 1
        if seq > self.top:
            return True
        behind = self.top - seq
        return behind < self.size and not (self.bitmap >> behind) & 1

    def update(self, seq: int):
        if seq > self.top:
            shift = seq - self.top
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << self.size) - 1)
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
