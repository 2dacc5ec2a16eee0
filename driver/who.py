""""Who am I really talking to": the peer identity, QoP and latch state of a
host connection, from the device's latch table.

    latchnic who tcp 192.0.2.2:40000 192.0.2.1:5000     (local, then remote)
    latchnic who --pid 1234                             (every connected socket of a process)

and in Python, for a socket object:

    from latchnic.driver.who import who_socket
    who_socket(sock, device)    # -> {"peer": ..., "qop": ..., "state": ..., ...} or None
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys

from .backend import Backend, BackendError

_PROTO_OF_TYPE = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}


def _norm(addr: str) -> str:
    a = ipaddress.ip_address(addr.strip("[]"))
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return str(a)


def who_flow(dev: Backend, proto: str, local: str, local_port: int, remote: str,
             remote_port: int) -> dict | None:
    """The latch of one connection (as the device lists it), or None."""
    local, remote = _norm(local), _norm(remote)
    for l in dev.latches():
        if (l["proto"] == proto and l["local"] == local and l["local_port"] == local_port
                and l["remote"] == remote and l["remote_port"] == remote_port):
            return l
    return None


def who_socket(sock: socket.socket, device: Backend | str | None = None) -> dict | None:
    """The latch (peer name, QoP, state, counters) of a connected socket."""
    proto = _PROTO_OF_TYPE.get(sock.type)
    if proto is None:
        raise ValueError("only TCP and UDP sockets are latched")
    local, remote = sock.getsockname(), sock.getpeername()
    if isinstance(device, Backend):
        return who_flow(device, proto, local[0], local[1], remote[0], remote[1])
    from .remote_backend import open_device
    with open_device(device) as dev:
        return who_flow(dev, proto, local[0], local[1], remote[0], remote[1])


def _endpoint(text: str, name: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        if not sep:
            raise ValueError
        return _norm(host), int(port)
    except ValueError:
        raise ValueError(f"argument '{name}': expected ADDRESS:PORT, got {text!r}") from None


def _pid_flows(pid: int) -> list[tuple]:
    """(proto, local, lport, remote, rport) of a process's connected sockets,
    looked up in the process's own network namespace."""
    from .sockets import pid_inodes, scan
    inodes = pid_inodes(pid)
    here = _ns_id("self")
    there = _ns_id(str(pid))
    if here != there:
        from pyroute2 import netns
        netns.setns(f"/proc/{pid}/ns/net", flags=0)
    return [(s.proto, s.local, s.local_port, s.remote, s.remote_port)
            for s in scan() if s.inode in inodes and s.connected]


def _ns_id(pid: str) -> str:
    import os
    return os.readlink(f"/proc/{pid}/ns/net")


def _cmd_who(args) -> int:
    from .remote_backend import open_device
    from .entries import argument_message
    try:
        if args.pid is not None:
            if args.flow:
                raise ValueError("give either --pid or PROTO LOCAL REMOTE, not both")
            try:
                flows = _pid_flows(args.pid)
            except OSError as e:
                raise ValueError(f"argument '--pid': cannot read process {args.pid}: {e.strerror}") from None
        else:
            if len(args.flow) != 3:
                raise ValueError("expected PROTO LOCAL:PORT REMOTE:PORT (or --pid PID)")
            proto = args.flow[0].lower()
            if proto not in ("tcp", "udp"):
                raise ValueError(f"argument 'proto': expected tcp or udp, got {args.flow[0]!r}")
            flows = [(proto, *_endpoint(args.flow[1], "local"), *_endpoint(args.flow[2], "remote"))]
        with open_device(args.device) as dev:
            rows = []
            for f in flows:
                l = who_flow(dev, *f)
                rows.append({"proto": f[0], "local": f[1], "local_port": f[2], "remote": f[3],
                             "remote_port": f[4], "latched": l is not None,
                             **({"peer": l["peer"], "qop": l["qop"], "state": l["state"],
                                 "slot": l["slot"]} if l else {})})
    except (ValueError, BackendError) as e:
        print(f"latchnic who: {argument_message(str(e))}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            head = f"{r['proto']} {r['local']}:{r['local_port']} -> {r['remote']}:{r['remote_port']}"
            if r["latched"]:
                print(f"{head}: peer {r['peer']} qop {r['qop']} state {r['state']} latch {r['slot']}")
            else:
                print(f"{head}: not latched (no latch on the device for this connection)")
    return 0 if all(r["latched"] for r in rows) and rows else 1


def register(sub):
    p = sub.add_parser("who", help="who is this connection really talking to (peer, QoP, latch state)")
    p.add_argument("flow", nargs="*", metavar="PROTO LOCAL:PORT REMOTE:PORT")
    p.add_argument("--pid", type=int, help="every connected TCP/UDP socket of this process")
    p.add_argument("--device", metavar="SOCKET", help="the device's control socket (default: $LATCHNIC_DEVICE)")
    p.add_argument("-j", "--json", action="store_true", help="JSON output")
    p.set_defaults(func=_cmd_who)
