"""The device API: one interface, interchangeable backends.

Every driver tool (CLI, daemon, `who`, the software NIC's control socket)
talks to a `Backend`. Backends:

  - `model_backend.ModelBackend`: the reference model in this process;
  - `remote_backend.RemoteBackend`: a device served on a Unix control socket
    (`latchnic nic`, which itself runs a ModelBackend);
  - `register_backend.RegisterBackend`: the gateware's AXI4-Lite register
    map (hw/regmap.py) over a bus (driver/buses.py): a board's mmap window,
    or the simulated core in the cocotb tests.

Operations take the configuration module's typed objects (Peer, SA, SpdRule,
Template, Config) and refuse with BackendError, leaving the device unchanged.
Observations return plain JSON-able dicts whose field names are the TOML
file's (listings) or documented in docs/driver.md (latches, events).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from latchnic.config import SA, Config, Peer, SpdRule, Template


class BackendError(ValueError):
    """The device refused an operation; nothing was changed."""


class Backend(ABC):
    name = "abstract"

    # ---------------------------------------------------------- tables
    @abstractmethod
    def add_peer(self, peer: Peer) -> None: ...
    @abstractmethod
    def del_peer(self, name: str) -> None: ...
    @abstractmethod
    def peers(self) -> list[dict]:
        """[{"name", "claims", "index"}] (index: what the hardware knows the peer by)."""

    @abstractmethod
    def add_sa(self, sa: SA) -> None: ...
    @abstractmethod
    def del_sa(self, name: str) -> None: ...
    @abstractmethod
    def sas(self, keys: bool = False) -> list[dict]:
        """The SAs as TOML tables (key only with keys=True) plus "counters"."""

    @abstractmethod
    def add_spd(self, rule: SpdRule, index: int | None = None) -> None: ...
    @abstractmethod
    def del_spd(self, direction: str, index: int) -> None: ...
    @abstractmethod
    def spd(self) -> list[dict]:
        """The rules as TOML tables plus "index" (position within its direction)."""

    @abstractmethod
    def add_template(self, template: Template) -> int: ...
    @abstractmethod
    def del_template(self, tid: int) -> None: ...
    @abstractmethod
    def templates(self) -> list[dict]:
        """The templates as TOML tables plus "id", in installation (= match) order."""

    @abstractmethod
    def apply(self, cfg: Config) -> None:
        """Make the device equal to cfg, all or nothing."""

    # --------------------------------------------------------- latches
    @abstractmethod
    def latches(self) -> list[dict]:
        """Live latches: slot, flow (text), version, proto, local, local_port,
        remote, remote_port, peer (name), peer_index, qop, state, template,
        created_ns, packets {in,out}, bytes {in,out}, drops."""

    @abstractmethod
    def release_latch(self, slot: int) -> None: ...

    @abstractmethod
    def events(self, since: int = 0, wait: float = 0.0, limit: int = 1000) -> tuple[list[dict], int]:
        """Latch events with sequence number > since (waiting up to `wait`
        seconds for one), and the sequence number to ask from next time."""

    # ------------------------------------------------------ observation
    @abstractmethod
    def counters(self) -> dict:
        """frames, drops (per reason), sa (per SA), latch (per live latch;
        None when the device keeps no per-latch counters: caps()
        latch_counters false)."""

    def clear_counters(self) -> None:
        """Every counter back to 0 (sequence numbers and windows stay)."""
        raise NotImplementedError(f"the {self.name} backend cannot clear counters")
    @abstractmethod
    def caps(self) -> dict: ...

    # ------------------------------------------- datapath (engine backends)
    def process(self, frame: bytes, direction: str, now_ns: int):
        """One frame through the device ("out": from the host, "in": from the
        wire) -> sim.device.Verdict. Only backends that hold the datapath in
        this process have it (the model; a simulated gateware); the software
        NIC runs frames through it."""
        raise NotImplementedError(f"the {self.name} backend has no datapath in this process")

    def tick(self, now_ns: int) -> None:
        """Advance the device clock without a frame (latch timers)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
