"""A device served on a Unix control socket (see control.py), as a Backend."""

from __future__ import annotations

import json
import os
import socket
import threading

from latchnic.config import SA, Config, Peer, SpdRule, Template

from .backend import Backend, BackendError
from .entries import config_to_toml, to_table


class DeviceUnreachable(BackendError):
    pass


class RemoteBackend(Backend):
    name = "remote"

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = str(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            self._sock.connect(self.path)
        except OSError as e:
            raise DeviceUnreachable(f"cannot reach device at {self.path}: "
                                    f"{e.strerror or e}") from None
        self._rfile = self._sock.makefile("rb")

    def close(self):
        try:
            self._rfile.close()
            self._sock.close()
        except OSError:
            pass

    def _call(self, op: str, timeout: float | None = None, **args):
        with self._lock:
            try:
                self._sock.settimeout(timeout or self.timeout)
                self._sock.sendall((json.dumps({"op": op, **args}) + "\n").encode())
                line = self._rfile.readline()
            except OSError as e:
                raise DeviceUnreachable(f"device at {self.path}: {e.strerror or e}") from None
        if not line:
            raise DeviceUnreachable(f"device at {self.path} closed the connection")
        resp = json.loads(line)
        if not resp.get("ok"):
            raise BackendError(resp.get("error", "unknown error"))
        return resp.get("result")

    def add_peer(self, peer: Peer):
        self._call("add_peer", table=to_table(peer))

    def del_peer(self, name: str):
        self._call("del_peer", name=name)

    def peers(self):
        return self._call("peers")

    def add_sa(self, sa: SA):
        self._call("add_sa", table=to_table(sa))

    def del_sa(self, name: str):
        self._call("del_sa", name=name)

    def sas(self, keys: bool = False):
        return self._call("sas", keys=keys)

    def add_spd(self, rule: SpdRule, index: int | None = None):
        self._call("add_spd", table=to_table(rule), index=index)

    def del_spd(self, direction: str, index: int):
        self._call("del_spd", dir=direction, index=index)

    def spd(self):
        return self._call("spd")

    def add_template(self, template: Template) -> int:
        return self._call("add_template", table=to_table(template))

    def del_template(self, tid: int):
        self._call("del_template", id=tid)

    def templates(self):
        return self._call("templates")

    def apply(self, cfg: Config):
        self._call("apply", text=config_to_toml(cfg), source=cfg.source)

    def latches(self):
        return self._call("latches")

    def release_latch(self, slot: int):
        self._call("release_latch", slot=slot)

    def events(self, since: int = 0, wait: float = 0.0, limit: int = 1000):
        r = self._call("events", timeout=self.timeout + wait, since=since, wait=wait, limit=limit)
        return r["events"], r["next"]

    def counters(self):
        return self._call("counters")

    def clear_counters(self):
        self._call("clear_counters")

    def caps(self):
        return self._call("caps")


MMAP_PREFIX = "mmap:"


def state_path_for(path: str, offset: int) -> str:
    """Where the register backend keeps its host-side tables between CLI
    runs: $LATCHNIC_STATE, else next to a regular file, else under
    /run/latchnic (a device node such as /dev/uio0)."""
    if os.environ.get("LATCHNIC_STATE"):
        return os.environ["LATCHNIC_STATE"]
    if os.path.isfile(path):
        return f"{path}@{offset:#x}.latchnic-state.json"
    os.makedirs("/run/latchnic", mode=0o700, exist_ok=True)
    return f"/run/latchnic/{path.strip('/').replace('/', '_')}@{offset:#x}.json"


def open_mmap(address: str) -> Backend:
    """`mmap:PATH[@OFFSET]`: the core's register window mapped from PATH at
    byte OFFSET (decimal or 0x...): a UIO device, /dev/mem, or a file."""
    from .buses import BusError, MmapBus
    from .register_backend import RegisterBackend

    spec = address[len(MMAP_PREFIX):]
    path, _, off = spec.partition("@")
    if not path:
        raise DeviceUnreachable(f"bad device address {address!r}: expected mmap:PATH[@OFFSET]")
    try:
        offset = int(off, 0) if off else 0
    except ValueError:
        raise DeviceUnreachable(f"bad device address {address!r}: offset {off!r} is not a number") from None
    try:
        bus = MmapBus(path, offset)
    except BusError as e:
        raise DeviceUnreachable(f"cannot reach device at {address}: {e}") from None
    try:
        return RegisterBackend(bus, tick_ns=int(os.environ.get("LATCHNIC_TICK_NS", 1_000_000)),
                               state_path=state_path_for(path, offset))
    except BaseException:
        bus.close()
        raise


def open_device(path: str | None = None) -> Backend:
    """The device named by an address (default: $LATCHNIC_DEVICE): a control
    socket path, or `mmap:PATH[@OFFSET]` for the register map of a board."""
    path = path or os.environ.get("LATCHNIC_DEVICE")
    if not path:
        raise DeviceUnreachable("no device: give --device PATH or set LATCHNIC_DEVICE")
    if path.startswith(MMAP_PREFIX):
        return open_mmap(path)
    return RemoteBackend(path)
