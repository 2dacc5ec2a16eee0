"""Host sockets as sock_diag (pyroute2 DiagSocket) sees them."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

# TCP states (include/net/tcp_states.h)
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV = 1, 2, 3
TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_TIME_WAIT, TCP_CLOSE = 4, 5, 6, 7
TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_LISTEN, TCP_CLOSING = 8, 9, 10, 11
STATE_NAMES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
               6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
               11: "CLOSING"}
PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


@dataclass(frozen=True)
class HostSocket:
    proto: str            # tcp | udp
    local: str
    local_port: int
    remote: str           # "0.0.0.0" / "::" when not connected
    remote_port: int      # 0 when not connected
    state: int
    inode: int

    @property
    def connected(self) -> bool:
        return self.remote_port != 0

    @property
    def listening(self) -> bool:
        if self.proto == "tcp":
            return self.state == TCP_LISTEN
        return not self.connected and self.local_port != 0

    @property
    def unspecified_local(self) -> bool:
        return ipaddress.ip_address(self.local).is_unspecified

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.local).is_loopback


def scan(protos=("tcp", "udp")) -> list[HostSocket]:
    """Every TCP/UDP socket (IPv4 and IPv6) of the current network namespace."""
    from pyroute2 import DiagSocket
    out = []
    with DiagSocket() as ds:
        ds.bind()
        for proto in protos:
            for family in (socket.AF_INET, socket.AF_INET6):
                for m in ds.get_sock_stats(family=family, protocol=PROTOS[proto]):
                    local, remote = m.get("idiag_src"), m.get("idiag_dst")
                    if local is None:
                        continue
                    local = _unmap(local)
                    remote = _unmap(remote) if remote else ("0.0.0.0" if family == socket.AF_INET else "::")
                    out.append(HostSocket(proto, local, m["idiag_sport"], remote,
                                          m["idiag_dport"], m["idiag_state"], m["idiag_inode"]))
    return out


def _unmap(addr: str) -> str:
    a = ipaddress.ip_address(addr)
    if a.version == 6 and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a)


def pid_inodes(pid: int) -> set[int]:
    """Inodes of the sockets a process holds open (from /proc/PID/fd)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
