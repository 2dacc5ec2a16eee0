"""Register buses the register-level backend runs over.

A bus is any object with `read(addr) -> int` and `write(addr, value)`:
32-bit accesses at byte offsets into the core's register window.

  - `MmapBus`: the window mapped from a file (a UIO device, /dev/mem, or a
    plain file for tests) at an offset;
  - `RecordingBus`: wraps another bus and logs every access (tests use it
    to prove that a refused operation wrote nothing);
  - `CocotbBus`: cocotbext-axi's AxiLiteMaster, for driver code running in a
    thread started with `cocotb.task.bridge` (each access is awaited on the
    simulator's side through `cocotb.task.resume`).
"""

from __future__ import annotations

import mmap
import os


class BusError(OSError):
    """An access the bus refused (SLVERR, address outside the window)."""


class MmapBus:
    """`size` bytes of `path` mapped at byte `offset`. UIO exposes map N of a
    device at offset N x page size; /dev/mem at the physical address. Each
    access is one aligned 32-bit load or store through a memoryview (native
    byte order, which is AXI's little-endian on the boards we target)."""

    def __init__(self, path: str, offset: int = 0, size: int = 4096):
        if offset < 0 or size <= 0 or size % 4:
            raise BusError(f"{path}: bad window offset {offset} / size {size}")
        self.path, self.size = str(path), size
        page = mmap.ALLOCATIONGRANULARITY
        base = offset - offset % page            # mmap wants a page-aligned offset
        self._delta = offset - base
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_SYNC", 0))
        except OSError as e:
            raise BusError(f"cannot open {self.path}: {e.strerror}") from None
        try:
            self._mm = mmap.mmap(fd, self._delta + size, offset=base)
        except (OSError, ValueError) as e:
            raise BusError(f"cannot map {size} bytes of {self.path} at {offset:#x}: {e}") from None
        finally:
            os.close(fd)
        self._words = memoryview(self._mm)[self._delta:self._delta + size].cast("I")

    def _index(self, addr: int) -> int:
        if addr % 4 or not 0 <= addr < self.size:
            raise BusError(f"{self.path}: address {addr:#x} outside the {self.size}-byte window "
                           "or not word aligned")
        return addr // 4

    def read(self, addr: int) -> int:
        return self._words[self._index(addr)]

    def write(self, addr: int, value: int) -> None:
        self._words[self._index(addr)] = value & 0xFFFFFFFF

    def close(self):
        if self._words is not None:
            self._words.release()
            self._words = None
            self._mm.close()


class RecordingBus:
    """Every access to `inner` logged as ("r"|"w", addr, value)."""

    def __init__(self, inner):
        self.inner = inner
        self.log: list[tuple[str, int, int]] = []

    def read(self, addr: int) -> int:
        value = self.inner.read(addr)
        self.log.append(("r", addr, value))
        return value

    def write(self, addr: int, value: int) -> None:
        self.log.append(("w", addr, value))
        self.inner.write(addr, value)

    @property
    def writes(self) -> list[tuple[int, int]]:
        return [(a, v) for k, a, v in self.log if k == "w"]

    def close(self):
        getattr(self.inner, "close", lambda: None)()


class CocotbBus:
    """An AxiLiteMaster as a blocking bus. Use it from a function run with
    `await cocotb.task.bridge(fn)(...)`: each access hands control back to
    the simulator until the AXI4-Lite transaction is done."""

    def __init__(self, master):
        from cocotb.task import resume

        async def read(addr):
            r = await master.read(addr, 4)
            if int(r.resp):
                raise BusError(f"AXI4-Lite read of {addr:#x}: response {int(r.resp)}")
            return int.from_bytes(r.data, "little")

        async def write(addr, value):
            r = await master.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))
            if int(r.resp):
                raise BusError(f"AXI4-Lite write of {addr:#x}: response {int(r.resp)}")

        self._read, self._write = resume(read), resume(write)

    def read(self, addr: int) -> int:
        return self._read(addr)

    def write(self, addr: int, value: int) -> None:
        self._write(addr, value)
