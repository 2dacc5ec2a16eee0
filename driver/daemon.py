"""`latchnic daemon`: latch unmodified applications by watching their sockets.

Polls sock_diag (pyroute2 DiagSocket) in the host's network namespace:
  - a listening TCP socket, or a bound unconnected UDP socket, gets a
    listener template (local address or ANY, proto, local port);
  - a connecting / connected socket that is not the child of one of our
    listeners gets an initiator template (its 5-tuple);
  - when a socket closes (gone, or TCP TIME_WAIT/CLOSE), its template is
    removed and the latch of its connection released.

The first packet of an outgoing connection (the SYN connect() sends at once)
leaves long before any poll can see the socket; the safety net (on by
default) is a pair of policy-wide initiator templates (TCP and UDP, local
address per --local prefix or ANY) installed at start, so that every
protected connection is latched at its first packet whatever the poll timing.
See docs/driver.md.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
import time

from latchnic.config import AddrSel, PortSel, Template

from .backend import Backend, BackendError
from .sockets import (PROTOS, TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT,
                      TCP_TIME_WAIT, HostSocket, scan)

LIVE_TCP = {TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, 4, 5, 8, 9, 11}   # not TIME_WAIT/CLOSE/LISTEN


def _host_sel(addr: str) -> AddrSel | None:
    a = ipaddress.ip_address(addr)
    if a.is_unspecified:
        return None
    bits = 32 if a.version == 4 else 128
    return AddrSel(a.version, int(a), int(a), str(ipaddress.ip_network(f"{a}/{bits}")))


def _net_sel(text: str) -> AddrSel:
    n = ipaddress.ip_network(text, strict=False)
    return AddrSel(n.version, int(n.network_address), int(n.broadcast_address), str(n))


class SocketWatcher:
    def __init__(self, dev: Backend, local: list[str] = (), safety_net: bool = True, log=print):
        self.dev = dev
        self.local = [ipaddress.ip_network(p, strict=False) for p in local]
        self.safety_net = safety_net
        self.log = log
        self.installed: dict[tuple, int | None] = {}     # socket key -> template id (None: accepted child)
        self.net_ids: list[int] = []
        self.closing: set[tuple] = set()                 # TIME_WAIT/CLOSE sockets already handled

    def _wanted(self, s: HostSocket) -> bool:
        if s.loopback:
            return False
        if not self.local or s.unspecified_local:
            return True
        a = ipaddress.ip_address(s.local)
        return any(a in n for n in self.local)

    def start(self):
        if self.safety_net:
            locals_ = [_net_sel(str(n)) for n in self.local] or [None]
            for sel in locals_:
                for proto in ("tcp", "udp"):
                    t = Template("initiator", local=sel, proto=PROTOS[proto])
                    tid = self.dev.add_template(t)
                    self.net_ids.append(tid)
                    self.log(f"template {tid}: safety net initiator {proto} local {sel or 'any'}")

    def stop(self):
        for key, tid in list(self.installed.items()):
            self._drop(key, tid, release=False)
        for tid in self.net_ids:
            self._del_template(tid)
        self.net_ids.clear()

    def _del_template(self, tid):
        try:
            self.dev.del_template(tid)
        except BackendError:
            pass

    def poll(self, sockets: list[HostSocket] | None = None):
        sockets = scan() if sockets is None else sockets
        want: dict[tuple, Template | None] = {}
        listeners = set()
        for s in sockets:
            if not self._wanted(s):
                continue
            if s.listening:
                key = ("listen", s.proto, s.local, s.local_port)
                listeners.add((s.proto, s.local_port))
                want[key] = Template("listener", local=_host_sel(s.local), proto=PROTOS[s.proto],
                                     local_port=PortSel(s.local_port, s.local_port))
        for s in sockets:
            if not self._wanted(s) or not s.connected:
                continue
            if s.proto == "tcp" and s.state not in LIVE_TCP:
                continue
            key = ("conn", s.proto, s.local, s.local_port, s.remote, s.remote_port)
            if (s.proto, s.local_port) in listeners:
                want[key] = None                        # accepted: latched through the listener
                continue
            want[key] = Template("initiator", local=_host_sel(s.local), remote=_host_sel(s.remote),
                                 proto=PROTOS[s.proto], local_port=PortSel(s.local_port, s.local_port),
                                 remote_port=PortSel(s.remote_port, s.remote_port))
        for key in [k for k in self.installed if k not in want]:
            self._drop(key, self.installed[key], release=True)
        # a connection can open and start closing between two polls (an accepted
        # child answered and closed at once): release by its TIME_WAIT/CLOSE socket
        closing = {("conn", s.proto, s.local, s.local_port, s.remote, s.remote_port)
                   for s in sockets if self._wanted(s) and s.connected and s.proto == "tcp"
                   and s.state in (TCP_TIME_WAIT, TCP_CLOSE)}
        for key in closing - self.closing:
            if key not in want:
                self._release(key)
        self.closing = closing
        for key, t in want.items():
            if key in self.installed:
                continue
            tid = None
            if t is not None:
                try:
                    tid = self.dev.add_template(t)
                except BackendError as e:
                    self.log(f"cannot add template for {_key_text(key)}: {e}")
                    continue
                self.log(f"template {tid}: {t.kind} for {_key_text(key)}")
            self.installed[key] = tid

    def _drop(self, key, tid, release: bool):
        del self.installed[key]
        if tid is not None:
            self._del_template(tid)
            self.log(f"template {tid} removed: {_key_text(key)} closed")
        if release and key[0] == "conn":
            self.closing.add(key)
            self._release(key)

    def _release(self, key):
        """Free the latch of a closed connection now (TIME_WAIT would hold it)."""
        _, proto, local, lport, remote, rport = key
        for l in self.dev.latches():
            if (l["proto"], l["local"], l["local_port"], l["remote"], l["remote_port"]) == (
                    proto, local, lport, remote, rport):
                try:
                    self.dev.release_latch(l["slot"])
                    self.log(f"latch {l['slot']} released: {_key_text(key)} closed")
                except BackendError:
                    pass


def _key_text(key) -> str:
    if key[0] == "listen":
        return f"{key[1]} listening {key[2]}:{key[3]}"
    return f"{key[1]} {key[2]}:{key[3]} -> {key[4]}:{key[5]}"


def _cmd_daemon(args) -> int:
    from .remote_backend import open_device
    if args.netns:
        from .nic import enter_netns
        enter_netns(args.netns)
    try:
        for p in args.local:
            ipaddress.ip_network(p, strict=False)
    except ValueError as e:
        print(f"latchnic daemon: argument '--local': {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        with open_device(args.device) as dev:
            w = SocketWatcher(dev, args.local, safety_net=not args.no_safety_net,
                              log=lambda m: print(f"latchnic daemon: {m}", flush=True))
            w.start()
            end = time.monotonic() + args.duration if args.duration else None
            try:
                while True:
                    w.poll()
                    if args.once or done.wait(args.interval) or (end and time.monotonic() >= end):
                        break
            finally:
                if not (args.keep or args.once):
                    w.stop()
    except BackendError as e:
        print(f"latchnic daemon: {e}", file=sys.stderr)
        return 2
    return 0


def register(sub):
    p = sub.add_parser("daemon", help="install latch templates for host sockets (sock_diag)")
    p.add_argument("--device", metavar="SOCKET", help="the device's control socket (default: $LATCHNIC_DEVICE)")
    p.add_argument("--interval", type=float, default=0.2, help="poll period, seconds (default 0.2)")
    p.add_argument("--local", action="append", default=[], metavar="PREFIX",
                   help="only sockets on these local addresses (repeatable; default all but loopback)")
    p.add_argument("--no-safety-net", action="store_true",
                   help="no policy-wide initiator templates (first packets may go unlatched)")
    p.add_argument("--netns", help="enter this network namespace first (watch its sockets)")
    p.add_argument("--once", action="store_true", help="poll once and exit (templates stay)")
    p.add_argument("--duration", type=float, default=0, help="exit after S seconds")
    p.add_argument("--keep", action="store_true", help="leave the templates installed on exit")
    p.set_defaults(func=_cmd_daemon)
