"""A network-namespace harness: two hosts, each behind its own software NIC,
a wire between the NICs that can be captured, and optionally a rogue host
on the wire.

    [host a] eth0 ==veth== h [nic a] w ==veth== pa \
                                                     br0 [wire]  (+ pr ==veth== eth0 [rogue])
    [host b] eth0 ==veth== h [nic b] w ==veth== pb /

Every namespace is created here (names start with a random tag) and deleted
by close(), also after failures. Addresses must come from the documentation
ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24. The kernel does no
IPsec here: the NICs do ESP. The hosts' interfaces have checksum and
segmentation offload turned off (a NIC that rewrites packets must get them
finished) and an MTU of 1400 so that ESP still fits the wire's 1500.
IPv6 is disabled in every namespace, so that only the test's traffic runs.

The NIC engine is selectable: "model" (reference model) now; "gateware"
takes its place once the policy core exists.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from pyroute2 import NetNS, netns

from .remote_backend import DeviceUnreachable, RemoteBackend

ALLOWED = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
HOST_MTU = 1400
ETH_P_ALL = 0x0003


class HarnessError(RuntimeError):
    pass


@contextlib.contextmanager
def inside(name: str):
    """Run this thread inside namespace `name`; sockets created here stay in it."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(name, flags=0)
        try:
            yield
        finally:
            netns.setns(home)
    finally:
        os.close(home)


def _check_addr(addr: str):
    ip = ipaddress.ip_interface(addr).ip
    if not any(ip in n for n in ALLOWED):
        raise HarnessError(f"{addr}: test traffic may only use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24")


def _sysctl_no_ipv6():
    for conf in ("all", "default"):
        try:
            with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass


def _offloads_off(ifname: str):
    """No unfinished checksums, no GSO/TSO super-frames towards the NIC."""
    from pyroute2.ethtool import Ethtool
    eth = Ethtool()
    try:
        feats = eth.get_features(ifname)
        for name, feat in feats.features.items():
            if name.startswith("tx-checksum") or name.endswith("segmentation") or name in (
                    "tx-scatter-gather", "rx-gro"):
                feat.enable = False
        eth.set_features(ifname, feats)
    finally:
        eth.close()


class Capture:
    """Every frame crossing one interface, both directions, with the
    monotonic time it was seen: (time_ns, outgoing, frame)."""

    def __init__(self, ns: str, ifname: str):
        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            self.sock.bind((ifname, ETH_P_ALL))
        self.sock.settimeout(0.1)
        self.frames: list[tuple[int, bool, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"capture-{ns}-{ifname}")
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.frames.append((time.monotonic_ns(), addr[2] == 4, frame))

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def write_pcap(self, path: str):
        from latchnic.sim.pcap import PcapWriter
        with PcapWriter(path, nanos=True) as w:
            for t, _, frame in self.frames:
                w.write(t, frame)


@dataclass
class Host:
    name: str                 # a | b
    addr: str                 # "192.0.2.1/24"
    ns: str = ""
    nic_ns: str = ""
    control: str = ""
    drops: str = ""
    proc: subprocess.Popen | None = None
    log: str = ""
    mac: str = ""

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.addr).ip)


@dataclass
class Harness:
    workdir: str
    hosts: dict = field(default_factory=dict)
    engine: str = "model"
    rogue: str | None = None          # the rogue's namespace, when asked for
    wire_ns: str = ""
    tag: str = ""
    created: list = field(default_factory=list)

    @classmethod
    def create(cls, workdir: str, a: str = "192.0.2.2/24", b: str = "192.0.2.1/24",
               engine: str = "model", rogue: bool = False) -> "Harness":
        for addr in (a, b):
            _check_addr(addr)
        h = cls(workdir=workdir, engine=engine, tag="ln" + secrets.token_hex(3))
        h.hosts = {"a": Host("a", a), "b": Host("b", b)}
        atexit.register(h.close)            # namespaces go even if the caller forgets
        try:
            h._build(rogue)
        except BaseException:
            h.close()
            raise
        return h

    # ----------------------------------------------------------- topology
    def _ns(self, role: str) -> str:
        name = f"{self.tag}-{role}"
        netns.create(name)
        self.created.append(name)
        with inside(name):
            _sysctl_no_ipv6()
        with NetNS(name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return name

    @staticmethod
    def _veth(ns: str, ifname: str, peer_ns: str, peer_name: str, mtu: int | None = None):
        """A veth pair with one end in each namespace (made inside `ns`, moved)."""
        tmp = "t" + secrets.token_hex(4)
        with NetNS(ns) as ipr:
            ipr.link("add", ifname=ifname, kind="veth", peer=tmp)
            ipr.link("set", index=ipr.link_lookup(ifname=tmp)[0], net_ns_fd=peer_ns)
            idx = ipr.link_lookup(ifname=ifname)[0]
            if mtu:
                ipr.link("set", index=idx, mtu=mtu)
            ipr.link("set", index=idx, state="up")
        with NetNS(peer_ns) as ipr:
            idx = ipr.link_lookup(ifname=tmp)[0]
            ipr.link("set", index=idx, ifname=peer_name)
            ipr.link("set", index=idx, state="up")

    def _build(self, rogue: bool):
        self.wire_ns = self._ns("wire")
        with NetNS(self.wire_ns) as ipr:
            ipr.link("add", ifname="br0", kind="bridge", br_stp_state=0, br_forward_delay=0)
            ipr.link("set", index=ipr.link_lookup(ifname="br0")[0], state="up")
        ports = []
        for host in self.hosts.values():
            host.ns = self._ns(host.name)
            host.nic_ns = self._ns(f"nic{host.name}")
            self._veth(host.ns, "eth0", host.nic_ns, "h", mtu=HOST_MTU)
            self._veth(host.nic_ns, "w", self.wire_ns, f"p{host.name}")
            ports.append(f"p{host.name}")
            with NetNS(host.ns) as ipr:
                idx = ipr.link_lookup(ifname="eth0")[0]
                ip = ipaddress.ip_interface(host.addr)
                ipr.addr("add", index=idx, address=str(ip.ip), prefixlen=ip.network.prefixlen)
                host.mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
            with inside(host.ns):
                _offloads_off("eth0")
            with NetNS(host.nic_ns) as ipr:
                for ifname in ("h", "w"):
                    ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], promiscuity=1)
            host.control = os.path.join(self.workdir, f"nic-{host.name}.sock")
            host.drops = os.path.join(self.workdir, f"nic-{host.name}-drops.jsonl")
            host.log = os.path.join(self.workdir, f"nic-{host.name}.log")
        if rogue:
            self.rogue = self._ns("rogue")
            self._veth(self.rogue, "eth0", self.wire_ns, "pr")
            ports.append("pr")
        with NetNS(self.wire_ns) as ipr:
            br = ipr.link_lookup(ifname="br0")[0]
            for p in ports:
                ipr.link("set", index=ipr.link_lookup(ifname=p)[0], master=br)

    # --------------------------------------------------------------- NICs
    def start_nics(self, configs: dict[str, str | None], timeout: float = 20.0):
        """Start one `latchnic nic` per host ({"a": CFG.toml or None, "b": ...})."""
        for name, host in self.hosts.items():
            cmd = [sys.executable, "-m", "latchnic", "nic", "--engine", self.engine,
                   "--netns", host.nic_ns, "--host-if", "h", "--wire-if", "w",
                   "--control", host.control, "--drops", host.drops]
            if configs.get(name):
                cmd += ["--config", configs[name]]
            log = open(host.log, "w")
            host.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            log.close()
        for host in self.hosts.values():
            self._wait_ready(host, timeout)

    def _wait_ready(self, host: Host, timeout: float):
        end = time.monotonic() + timeout
        while True:
            if host.proc.poll() is not None:
                raise HarnessError(f"NIC {host.name} exited with {host.proc.returncode}: "
                                   f"{open(host.log).read().strip()}")
            try:
                with RemoteBackend(host.control, timeout=2) as dev:
                    dev.caps()
                return
            except DeviceUnreachable:
                if time.monotonic() > end:
                    raise HarnessError(f"NIC {host.name} did not come up in {timeout} s") from None
                time.sleep(0.05)

    def device(self, name: str) -> RemoteBackend:
        return RemoteBackend(self.hosts[name].control)

    def capture(self, name: str) -> Capture:
        """The wire at host `name`'s NIC (port p<name> of the wire's bridge)."""
        return Capture(self.wire_ns, f"p{name}")

    def rogue_send(self, frame: bytes):
        with inside(self.rogue):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.bind(("eth0", ETH_P_ALL))
            s.send(frame)
        finally:
            s.close()

    # ------------------------------------------------------------ cleanup
    def close(self):
        for host in self.hosts.values():
            if host.proc is not None and host.proc.poll() is None:
                host.proc.terminate()
                try:
                    host.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    host.proc.kill()
                    host.proc.wait(timeout=5)
        for name in reversed(self.created):
            try:
                netns.remove(name)
            except OSError:
                pass
        self.created.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def namespaces_available() -> str | None:
    """None if this process can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = "ln" + secrets.token_hex(4) + "-probe"
    try:
        netns.create(name)
    except Exception as e:           # noqa: BLE001 - any failure means: skip
        return f"cannot create a network namespace: {e}"
    try:
        netns.remove(name)
    except OSError:
        pass
    return None
