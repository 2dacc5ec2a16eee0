"""A network-namespace harness: two hosts, each behind its own software NIC,
a wire between the NICs that can be captured, and optionally a rogue host
on the wire.

    [host a] eth0 ==veth== h [nic a] w ==veth== pa \
                                                     br0 [wire]  (+ pr ==veth== eth0 [rogue])
    [host b] eth0 ==veth== h [nic b] w ==veth== pb /

Every namespace is created here (named ln<pid>x<random>-<role>) and deleted
by close(), also after failures and at exit; namespaces left by a process
that was killed are reaped by the next harness. Addresses must come from the documentation
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
import re
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
        reap_stale()
        h = cls(workdir=workdir, engine=engine, tag=f"ln{os.getpid()}x{secrets.token_hex(2)}")
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



# ------------------------------------------------- a ready-made configuration

PAIR_A, PAIR_B = "192.0.2.2", "192.0.2.1"       # a: the client host, b: the server host
K_AB = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf11223344"     # a -> b
K_BA = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf55667788"     # b -> a
K_ROGUE = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf99aabbcc"  # rogue -> b

SA_COMMON = 'proto = "esp"\nmode = "transport"\nalg = "aes-gcm-128"\nicv = 16\n'


def pair_configs(a: str = PAIR_A, b: str = PAIR_B, port: int = 5000) -> tuple[str, str]:
    """The harness's standard configurations (client NIC a, server NIC b):
    ESP AES-GCM-128 transport between a and b for TCP; the server's PAD lets
    both client@example.org and rogue@example.org claim 192.0.2.0/24 (a shared
    pool, the flow-stealing set-up); the client latches its connections to
    port `port` through a policy-wide initiator template; the server's
    listener templates are left to the operator or the daemon."""
    A, B = a, b
    client = f"""
    [device]
    time_wait_s = 60

    [[peer]]
    name = "server@example.org"
    claims = ["{B}/32"]

    [[sa]]
    name = "from-b"
    dir = "in"
    spi = 0x2001
    {SA_COMMON}key = "{K_BA}"
    peer = "server@example.org"
    src = "{B}"
    dst = "{A}"

    [[sa]]
    name = "to-b"
    dir = "out"
    spi = 0x1001
    {SA_COMMON}key = "{K_AB}"
    peer = "server@example.org"
    src = "{A}"
    dst = "{B}"

    [[spd]]
    dir = "out"
    local = "{A}/32"
    remote = "{B}/32"
    proto = "tcp"
    action = "protect"
    sa = "to-b"

    [[spd]]
    dir = "in"
    local = "{A}/32"
    remote = "{B}/32"
    proto = "tcp"
    action = "protect"

    [[template]]
    kind = "initiator"
    local = "{A}"
    remote = "{B}"
    proto = "tcp"
    remote_port = {port}
    """

    server = f"""
    [device]
    time_wait_s = 60

    [[peer]]
    name = "client@example.org"
    claims = ["192.0.2.0/24"]

    [[peer]]
    name = "rogue@example.org"
    claims = ["192.0.2.0/24"]

    [[sa]]
    name = "from-a"
    dir = "in"
    spi = 0x1001
    {SA_COMMON}key = "{K_AB}"
    peer = "client@example.org"
    src = "{A}"
    dst = "{B}"

    [[sa]]
    name = "to-a"
    dir = "out"
    spi = 0x2001
    {SA_COMMON}key = "{K_BA}"
    peer = "client@example.org"
    src = "{B}"
    dst = "{A}"

    [[sa]]
    name = "from-rogue"
    dir = "in"
    spi = 0x3001
    {SA_COMMON}key = "{K_ROGUE}"
    peer = "rogue@example.org"
    src = "{A}"
    dst = "{B}"

    [[spd]]
    dir = "out"
    local = "{B}/32"
    remote = "192.0.2.0/24"
    proto = "tcp"
    action = "protect"
    sa = "to-a"

    [[spd]]
    dir = "in"
    local = "{B}/32"
    remote = "192.0.2.0/24"
    proto = "tcp"
    action = "protect"
    """
    return client, server


_OURS = re.compile(r"^ln(\d+)x[0-9a-f]{4}-(wire|a|b|nica|nicb|rogue)$")


def reap_stale() -> list[str]:
    """Delete namespaces an earlier harness made (by its naming pattern,
    ln<pid>x<tag>-<role>) whose creating process no longer exists, e.g.
    after a test run was killed before it could clean up."""
    removed = []
    try:
        names = netns.listnetns()
    except OSError:
        return removed
    for name in names:
        m = _OURS.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                netns.remove(name)
                removed.append(name)
            except OSError:
                pass
    return removed


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


def main(argv=None) -> int:
    """`python -m latchnic.driver.netns`: build the harness, run one plain TCP
    connection across the two software NICs, show the latches and the wire,
    optionally hold it up for `latchnic` commands, and tear it all down."""
    import argparse
    import json
    import tempfile
    p = argparse.ArgumentParser(prog="python -m latchnic.driver.netns")
    p.add_argument("--engine", choices=("model", "gateware"), default="model")
    p.add_argument("--hold", type=float, default=0, help="keep everything up this many seconds")
    p.add_argument("--pcap", help="write the wire (at NIC a) to this pcap")
    args = p.parse_args(argv)
    why = namespaces_available()
    if why:
        print(f"netns harness: {why}", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="ln-harness-")
    client_cfg, server_cfg = pair_configs(port=5000)
    paths = {}
    for name, text in (("a", client_cfg), ("b", server_cfg)):
        paths[name] = os.path.join(work, f"{name}.toml")
        with open(paths[name], "w") as f:
            f.write(text)
    with Harness.create(work, a=f"{PAIR_A}/24", b=f"{PAIR_B}/24", engine=args.engine, rogue=True) as h:
        try:
            h.start_nics(paths)
        except HarnessError as e:
            print(f"netns harness: {e}", file=sys.stderr)
            return 2
        from latchnic.config import parse_config
        with h.device("b") as dev:
            dev.add_template(parse_config(f'[[template]]\nkind = "listener"\nlocal = "{PAIR_B}"\n'
                                          'proto = "tcp"\nlocal_port = 5000\n').templates[0])
        cap = h.capture("a")
        with inside(h.hosts["b"].ns):
            srv = socket.create_server((PAIR_B, 5000))
        srv.settimeout(10)
        with inside(h.hosts["a"].ns):
            cli = socket.create_connection((PAIR_B, 5000), timeout=10)
        conn, _ = srv.accept()
        conn.settimeout(10)
        cli.sendall(b"hello over the latched connection")
        print(f"server got: {conn.recv(100)!r}")
        conn.sendall(b"hello back")
        print(f"client got: {cli.recv(100)!r}")
        time.sleep(0.2)
        cap.close()
        for name in ("a", "b"):
            print(f"NIC {name} ({h.hosts[name].ip}), control socket {h.hosts[name].control}:")
            with h.device(name) as dev:
                for l in dev.latches():
                    print(f"  latch {l['slot']} {l['flow']} peer {l['peer']} qop {l['qop']} {l['state']}")
        kinds = {}
        for _, _, frame in cap.frames:
            if len(frame) > 23 and frame[12:14] == b"\x08\x00":
                kinds[frame[23]] = kinds.get(frame[23], 0) + 1
        print(f"wire at NIC a, IPv4 frames by protocol: {json.dumps(kinds)} (50 = ESP)")
        if args.pcap:
            cap.write_pcap(args.pcap)
            print(f"wire written to {args.pcap}")
        if args.hold:
            print(f"holding {args.hold} s; try: latchnic latch list --device {h.hosts['b'].control}",
                  flush=True)
            time.sleep(args.hold)
        for s in (cli, conn, srv):
            s.close()
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
