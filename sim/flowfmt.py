"""Human-readable flows, shared by events, listings and the CLI."""

import ipaddress

from .packet import IPPROTO_TCP, IPPROTO_UDP

PROTO_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", 1: "icmp", 58: "ipv6-icmp"}


def addr_text(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def endpoint(version: int, addr: int, port) -> str:
    a = addr_text(version, addr)
    a = f"[{a}]" if version == 6 else a
    return f"{a}:{port if port is not None else '*'}"


def flow_text(flow) -> str:
    proto = PROTO_NAMES.get(flow.proto, str(flow.proto))
    return (f"{proto} {endpoint(flow.version, flow.local, flow.local_port)} <-> "
            f"{endpoint(flow.version, flow.remote, flow.remote_port)}")
