"""The software NIC: a device engine bridging two Linux network interfaces.

    host side interface --(out)--> engine --> wire side interface
    host side interface <--(in)--- engine <-- wire side interface

Frames are read and written with AF_PACKET raw sockets; each direction has
its own thread; the device clock is the monotonic clock in nanoseconds; a
ticker advances it once a second so latch timers run without traffic. The
device API is served on a Unix control socket (control.py), so every
`latchnic` command works against it with --device.

Engines: "model" (the reference model). "gateware" is the slot for the
simulated or real offload block: it refuses until the policy core exists.
The host-side interface must not hand the NIC unfinished checksums or
segmentation-offload super-frames: the netns harness turns those offloads off
on the host's interface, as a real NIC's driver would negotiate them.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time

from latchnic.config import ConfigError, load_config

from .control import ControlServer
from .model_backend import ModelBackend

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


def make_engine(engine: str, cfg, capacities: dict):
    if engine == "model":
        return ModelBackend.from_config(cfg, **capacities)
    from latchnic.sim.gateware_engine import GatewareDevice
    GatewareDevice.from_config(cfg)            # raises EngineUnavailable until it exists
    raise RuntimeError("unreachable")


def packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass                                    # older kernels: filtered by pkttype below
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((ifname, ETH_P_ALL))
    s.settimeout(0.2)
    return s


class SoftNic:
    def __init__(self, backend: ModelBackend, host_if: str, wire_if: str, drops_path: str | None = None):
        self.backend = backend
        self.host_if, self.wire_if = host_if, wire_if
        self.host = packet_socket(host_if)
        self.wire = packet_socket(wire_if)
        self.stop = threading.Event()
        self.errors = {"send": 0}
        self._drops = open(drops_path, "a", buffering=1) if drops_path else None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.host, "out", self.wire), daemon=True,
                             name="nic-out"),
            threading.Thread(target=self._pump, args=(self.wire, "in", self.host), daemon=True,
                             name="nic-in"),
            threading.Thread(target=self._ticker, daemon=True, name="nic-tick"),
        ]

    def start(self) -> "SoftNic":
        for t in self._threads:
            t.start()
        return self

    def close(self):
        self.stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.host.close()
        self.wire.close()
        if self._drops:
            self._drops.close()

    def _pump(self, rx: socket.socket, direction: str, tx: socket.socket):
        while not self.stop.is_set():
            try:
                frame, addr = rx.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                raise
            if addr[2] == PACKET_OUTGOING:          # our own transmissions
                continue
            now = time.monotonic_ns()
            try:
                v = self.backend.process(frame, direction, now)
            except Exception as e:          # noqa: BLE001 - a bug must not stop the datapath
                self.errors[type(e).__name__] = self.errors.get(type(e).__name__, 0) + 1
                print(f"latchnic nic: {direction} frame dropped, engine error: {e!r}",
                      file=sys.stderr, flush=True)
                continue
            if v.action == "forward":
                try:
                    tx.send(v.frame)
                except OSError:
                    self.errors["send"] += 1
            elif self._drops:
                self._drops.write(json.dumps({"time_ns": now, "dir": direction, "reason": v.reason,
                                              "sa": v.sa, "latch": v.latch, "detail": v.detail}) + "\n")

    def _ticker(self):
        while not self.stop.wait(1.0):
            self.backend.tick(time.monotonic_ns())


def enter_netns(name: str):
    from pyroute2 import netns
    netns.setns(name, flags=0)


def _cmd_nic(args) -> int:
    from latchnic.sim.gateware_engine import EngineUnavailable
    try:
        cfg = load_config(args.config) if args.config else None
    except ConfigError as e:
        print(f"latchnic nic: {e}", file=sys.stderr)
        return 2
    if cfg is None:
        from latchnic.config import Config
        cfg = Config(source="<empty>")
    caps = {k: v for k, v in (("peer_capacity", args.peers), ("sa_capacity", args.sas),
                              ("spd_capacity", args.spd_rules), ("template_capacity", args.templates))
            if v}
    try:
        backend = make_engine(args.engine, cfg, caps)
    except EngineUnavailable as e:
        print(f"latchnic nic: {e}", file=sys.stderr)
        return 2
    if args.netns:
        enter_netns(args.netns)
    if bool(args.host_if) != bool(args.wire_if):
        print("latchnic nic: give both --host-if and --wire-if (or neither: control socket only)",
              file=sys.stderr)
        return 2
    nic = None
    if args.host_if:
        try:
            nic = SoftNic(backend, args.host_if, args.wire_if, args.drops).start()
        except OSError as e:
            print(f"latchnic nic: cannot open interfaces: {e}", file=sys.stderr)
            return 2
    server = ControlServer(backend, args.control)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    print(f"latchnic nic: engine {args.engine}, "
          + (f"host {args.host_if} <-> wire {args.wire_if}, " if nic else "no interfaces, ")
          + f"control {args.control}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.close()
        if nic:
            nic.close()
    return 0


def register(sub):
    p = sub.add_parser("nic", help="the software NIC: bridge two interfaces through the device engine")
    p.add_argument("--control", required=True, metavar="SOCKET", help="Unix control socket to serve")
    p.add_argument("--host-if", help="host-side interface (frames from it go out)")
    p.add_argument("--wire-if", help="wire-side interface (frames from it come in)")
    p.add_argument("--config", help="configuration to program at start (TOML)")
    p.add_argument("--engine", choices=("model", "gateware"), default="model")
    p.add_argument("--netns", help="enter this network namespace first")
    p.add_argument("--drops", help="append one JSON line per dropped frame to this file")
    for name, what in (("peers", "PAD"), ("sas", "SAD"), ("spd-rules", "SPD"), ("templates", "template table")):
        p.add_argument(f"--{name}", type=int, default=0, help=f"{what} capacity (default: the engine's)")
    p.set_defaults(func=_cmd_nic)
