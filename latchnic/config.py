"""The device configuration: typed objects and the TOML file that holds them.

One file describes what the driver programs into a device (PAD peers, SAD
entries, SPD rules, latch templates, device knobs); the reference model, the
simulated gateware and a board all take these same objects. Loading checks the
whole file before anything is returned: a bad file raises ConfigError naming
the file, the entry and the field, and nothing is programmed.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58}
ALGORITHMS = {
    # name: (key bytes, encrypts)
    "aes-gcm-128": (16, True),
    "aes-gcm-256": (32, True),
    "gmac-128": (16, False),
    "gmac-256": (32, False),
}
SALT_LEN = 4
GCM_ICV_LENGTHS = (8, 12, 16)
REPLAY_WINDOW_RANGE = (64, 4096)


class ConfigError(ValueError):
    """A configuration that must not be programmed. The message names where."""


# ---------------------------------------------------------------- selectors

@dataclass(frozen=True)
class AddrSel:
    """An address selector: a prefix or an inclusive range, of one IP version.
    None stands for ANY wherever an AddrSel is optional."""
    version: int
    lo: int
    hi: int
    text: str

    def matches(self, version: int, addr: int) -> bool:
        return version == self.version and self.lo <= addr <= self.hi

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class PortSel:
    """A port selector: inclusive range, or OPAQUE (matches only packets whose
    ports are not available, e.g. non-first fragments). None means ANY."""
    lo: int = 0
    hi: int = 65535
    opaque: bool = False

    def matches(self, port: int | None) -> bool:
        if port is None:
            return self.opaque
        return not self.opaque and self.lo <= port <= self.hi

    def __str__(self) -> str:
        if self.opaque:
            return "opaque"
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


def sel_text(sel) -> str:
    return "any" if sel is None else str(sel)


# ------------------------------------------------------------------ objects

@dataclass(frozen=True)
class DeviceKnobs:
    replay_window: int = 64
    time_wait_s: float = 60.0
    udp_idle_s: float = 30.0
    latch_capacity: int = 1024     # latch table slots (sets x ways)
    latch_ways: int = 4            # set associativity: a set full = table full for that flow
    # 0: one table for both IP versions; else the last latch_capacity_v6 slots
    # are a table for IPv6 flows, the others one for IPv4 flows (docs/model.md)
    latch_capacity_v6: int = 0


@dataclass(frozen=True)
class Peer:
    name: str
    claims: tuple[AddrSel, ...] = ()

    def may_claim(self, version: int, addr: int) -> bool:
        return any(c.matches(version, addr) for c in self.claims)


@dataclass(frozen=True)
class QoP:
    """Quality of protection of an SA, as a latch records it."""
    proto: str        # esp | ah
    mode: str         # transport | tunnel
    encrypts: bool
    key_bits: int
    icv: int

    def satisfies(self, latched: "QoP") -> bool:
        """May a flow latched at `latched` continue under this QoP?"""
        return (self.proto == latched.proto and self.mode == latched.mode
                and (self.encrypts or not latched.encrypts)
                and self.key_bits >= latched.key_bits and self.icv >= latched.icv)

    def __str__(self) -> str:
        kind = "aes-gcm" if self.encrypts else "gmac"
        return f"{self.proto}/{self.mode}/{kind}-{self.key_bits}/icv{self.icv}"


@dataclass(frozen=True)
class SA:
    name: str
    dir: str
    spi: int
    proto: str
    mode: str
    alg: str
    key: bytes
    salt: bytes
    icv: int
    esn: bool
    peer: str
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    seq: int = 0                      # out: last number sent; in: highest received
    replay_window: int | None = None  # None: the device's window

    @property
    def encrypts(self) -> bool:
        return ALGORITHMS[self.alg][1]

    @property
    def qop(self) -> QoP:
        return QoP(self.proto, self.mode, self.encrypts, len(self.key) * 8, self.icv)


@dataclass(frozen=True)
class SpdRule:
    dir: str
    action: str
    local: AddrSel | None = None
    remote: AddrSel | None = None
    proto: int | None = None
    local_port: PortSel | None = None
    remote_port: PortSel | None = None
    sa: str | None = None      # out PROTECT: the SA to use; in PROTECT: optional pin
    peer: str | None = None    # in PROTECT: optional pin


@dataclass(frozen=True)
class Template:
    kind: str                  # listener | initiator
    local: AddrSel | None = None
    remote: AddrSel | None = None
    proto: int | None = None   # tcp | udp | None (any of the two)
    local_port: PortSel | None = None
    remote_port: PortSel | None = None
    peer: str | None = None    # expected peer identity


@dataclass
class Config:
    device: DeviceKnobs = field(default_factory=DeviceKnobs)
    peers: list[Peer] = field(default_factory=list)
    sas: list[SA] = field(default_factory=list)
    spd: list[SpdRule] = field(default_factory=list)
    templates: list[Template] = field(default_factory=list)
    source: str = "<config>"


# ------------------------------------------------------------------ parsing

class _Entry:
    """Reads fields of one table entry, raising errors that say where."""

    def __init__(self, source: str, where: str, table: dict):
        self.source, self.where, self.table = source, where, table
        self.used: set[str] = set()

    def fail(self, fieldname: str | None, msg: str):
        at = f"{self.where}, field '{fieldname}'" if fieldname else self.where
        raise ConfigError(f"{self.source}: {at}: {msg}")

    def get(self, name, kind, default=..., choices=None):
        self.used.add(name)
        if name not in self.table:
            if default is ...:
                self.fail(name, "missing (required)")
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(name, f"expected {want}, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            self.fail(name, f"{value!r} is not one of {', '.join(map(str, choices))}")
        return value

    def finish(self):
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            self.fail(unknown[0], "unknown field")


def parse_addr_sel(text: str, entry: _Entry, name: str) -> AddrSel | None:
    text = text.strip()
    if text == "any":
        return None
    try:
        if "-" in text:
            lo_s, hi_s = (p.strip() for p in text.split("-", 1))
            lo, hi = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
            if lo.version != hi.version or int(lo) > int(hi):
                raise ValueError("range ends must be one IP version, low to high")
            return AddrSel(lo.version, int(lo), int(hi), text)
        net = ipaddress.ip_network(text, strict=True)
        return AddrSel(net.version, int(net.network_address), int(net.broadcast_address), str(net))
    except ValueError as e:
        entry.fail(name, f"bad address selector {text!r}: {e}")


def parse_port_sel(value, entry: _Entry, name: str) -> PortSel | None:
    if isinstance(value, bool):
        entry.fail(name, f"bad port {value!r}")
    if isinstance(value, int):
        lo = hi = value
    else:
        text = str(value).strip()
        if text == "any":
            return None
        if text == "opaque":
            return PortSel(opaque=True)
        try:
            if "-" in text:
                lo, hi = (int(p) for p in text.split("-", 1))
            else:
                lo = hi = int(text)
        except ValueError:
            entry.fail(name, f"bad port {value!r}: expected any, opaque, N or \"N-M\"")
    if not (0 <= lo <= hi <= 65535):
        entry.fail(name, f"bad port {value!r}: ports are 0..65535, low to high")
    return PortSel(lo, hi)


def parse_proto(value, entry: _Entry, name: str, allowed=None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value in ("any",):
        number = None
    elif isinstance(value, str) and value in PROTO_NUMBERS:
        number = PROTO_NUMBERS[value]
    elif isinstance(value, str) and value.isdigit():
        number = int(value)
    else:
        entry.fail(name, f"bad protocol {value!r}: expected tcp, udp, icmp, any or a number")
    if number is not None and not 0 <= number <= 255:
        entry.fail(name, f"bad protocol {value!r}: numbers are 0..255")
    if allowed is not None and number not in allowed:
        entry.fail(name, f"protocol {value!r} not allowed here (tcp, udp or any)")
    return number


def _ip(text, entry, name):
    if text == "any":
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        entry.fail(name, str(e))


def _device(source, table) -> DeviceKnobs:
    e = _Entry(source, "[device]", table)
    d = DeviceKnobs()
    rw = e.get("replay_window", int, d.replay_window)
    if not REPLAY_WINDOW_RANGE[0] <= rw <= REPLAY_WINDOW_RANGE[1]:
        e.fail("replay_window", f"{rw} is outside {REPLAY_WINDOW_RANGE[0]}..{REPLAY_WINDOW_RANGE[1]}")
    tw = e.get("time_wait_s", (int, float), d.time_wait_s)
    ui = e.get("udp_idle_s", (int, float), d.udp_idle_s)
    for n, v in (("time_wait_s", tw), ("udp_idle_s", ui)):
        if not math.isfinite(v) or v < 0:
            e.fail(n, f"must be a finite number of seconds >= 0, got {v}")
    cap = e.get("latch_capacity", int, d.latch_capacity)
    ways = e.get("latch_ways", int, d.latch_ways)
    if ways < 1 or ways & (ways - 1):
        e.fail("latch_ways", f"must be a power of two >= 1, got {ways}")
    cap6 = e.get("latch_capacity_v6", int, d.latch_capacity_v6)

    def ways_pow2(n):
        return n >= ways and n % ways == 0 and not (n // ways) & (n // ways - 1)

    if cap6 == 0 and not ways_pow2(cap):
        e.fail("latch_capacity", f"must be latch_ways x a power of two, got {cap}")
    if cap6 != 0:
        if cap6 < 0 or not ways_pow2(cap6):
            e.fail("latch_capacity_v6", f"must be 0 (one table) or latch_ways x a power of two, got {cap6}")
        if not ways_pow2(cap - cap6):
            e.fail("latch_capacity", f"minus latch_capacity_v6 ({cap6}) must be latch_ways x a power "
                   f"of two (the IPv4 table), got {cap} - {cap6} = {cap - cap6}")
    e.finish()
    return DeviceKnobs(rw, float(tw), float(ui), cap, ways, cap6)


def _peer(source, i, table) -> Peer:
    e = _Entry(source, f"peer[{i}]", table)
    name = e.get("name", str)
    e.where = f"peer[{i}] ({name!r})"
    claims = e.get("claims", list, [])
    sels = []
    for c in claims:
        if not isinstance(c, str):
            e.fail("claims", f"expected address strings, got {c!r}")
        sel = parse_addr_sel(c, e, "claims")
        if sel is None:
            e.fail("claims", "'any' is not a claim; list the prefixes the peer may use")
        sels.append(sel)
    e.finish()
    return Peer(name, tuple(sels))


def _sa(source, i, table) -> SA:
    e = _Entry(source, f"sa[{i}]", table)
    name = e.get("name", str)
    e.where = f"sa[{i}] ({name!r})"
    direction = e.get("dir", str, choices=("in", "out"))
    spi = e.get("spi", int)
    if not 256 <= spi <= 0xFFFFFFFF:
        e.fail("spi", f"{spi:#x} is outside 0x100..0xffffffff (0..255 are reserved)")
    proto = e.get("proto", str, choices=("esp", "ah"))
    mode = e.get("mode", str, choices=("transport", "tunnel"))
    alg = e.get("alg", str, choices=tuple(ALGORITHMS))
    if proto == "ah" and ALGORITHMS[alg][1]:
        e.fail("alg", f"{alg} encrypts; AH only authenticates (use gmac-128 or gmac-256)")
    keyhex = e.get("key", str)
    try:
        keymat = bytes.fromhex(keyhex)
    except ValueError:
        e.fail("key", "not a hex string")
    want = ALGORITHMS[alg][0] + SALT_LEN
    if len(keymat) != want:
        e.fail("key", f"{alg} needs {want} bytes (key || 4-byte salt), got {len(keymat)}")
    icv = e.get("icv", int, 16)
    if icv not in GCM_ICV_LENGTHS or (not ALGORITHMS[alg][1] and icv != 16):
        e.fail("icv", f"{icv} is not allowed for {alg} ({'8, 12 or 16' if ALGORITHMS[alg][1] else '16 only'})")
    esn = e.get("esn", bool, False)
    peer = e.get("peer", str)
    src = _ip(e.get("src", str, "any"), e, "src")
    dst = _ip(e.get("dst", str, "any"), e, "dst")
    if src is not None and dst is not None and src.version != dst.version:
        e.fail("dst", "src and dst must be the same IP version")
    if mode == "tunnel" and direction == "out" and (src is None or dst is None):
        e.fail("src" if src is None else "dst", "an outbound tunnel SA needs both outer addresses")
    # inbound: src and dst make an (SPI, dst, src) entry, dst alone (SPI, dst), neither SPI only
    if direction == "in" and src is not None and dst is None:
        e.fail("dst", "an inbound SA that names src must also name dst")
    seq = e.get("seq", int, 0)
    limit = (1 << 64) - 1 if esn else (1 << 32) - 1
    if not 0 <= seq <= limit:
        e.fail("seq", f"{seq} is outside 0..{limit}")
    rw = e.get("replay_window", int, None)
    if rw is not None and not REPLAY_WINDOW_RANGE[0] <= rw <= REPLAY_WINDOW_RANGE[1]:
        e.fail("replay_window", f"{rw} is outside {REPLAY_WINDOW_RANGE[0]}..{REPLAY_WINDOW_RANGE[1]}")
    e.finish()
    key_len = ALGORITHMS[alg][0]
    return SA(name, direction, spi, proto, mode, alg, keymat[:key_len], keymat[key_len:],
              icv, esn, peer, src, dst, seq, rw)


def _selectors(e: _Entry, *, template: bool):
    local = parse_addr_sel(e.get("local", str, "any"), e, "local")
    remote = parse_addr_sel(e.get("remote", str, "any"), e, "remote")
    proto = parse_proto(e.get("proto", (str, int), "any"), e, "proto",
                        allowed=(6, 17, None) if template else None)
    lport = parse_port_sel(e.get("local_port", (str, int), "any"), e, "local_port")
    rport = parse_port_sel(e.get("remote_port", (str, int), "any"), e, "remote_port")
    if local and remote and local.version != remote.version:
        e.fail("remote", "local and remote must be the same IP version")
    return local, remote, proto, lport, rport


def _spd(source, i, table) -> SpdRule:
    e = _Entry(source, f"spd[{i}]", table)
    direction = e.get("dir", str, choices=("in", "out"))
    action = e.get("action", str, choices=("protect", "bypass", "discard"))
    local, remote, proto, lport, rport = _selectors(e, template=False)
    sa = e.get("sa", str, None)
    peer = e.get("peer", str, None)
    if action == "protect" and direction == "out" and sa is None:
        e.fail("sa", "an outbound protect rule must name the SA to use")
    if action != "protect" and (sa or peer):
        e.fail("sa" if sa else "peer", f"only protect rules name an SA or peer, this one is {action}")
    if direction == "out" and peer is not None:
        e.fail("peer", "outbound rules choose the peer through their SA")
    e.finish()
    return SpdRule(direction, action, local, remote, proto, lport, rport, sa, peer)


def _template(source, i, table) -> Template:
    e = _Entry(source, f"template[{i}]", table)
    kind = e.get("kind", str, choices=("listener", "initiator"))
    local, remote, proto, lport, rport = _selectors(e, template=True)
    if kind == "listener" and (remote is not None or rport is not None):
        e.fail("remote" if remote is not None else "remote_port",
               "a listener template is a 3-tuple (local, proto, local_port)")
    peer = e.get("peer", str, None)
    e.finish()
    return Template(kind, local, remote, proto, lport, rport, peer)


def check_references(cfg: Config):
    """Cross-entry rules: names unique, references resolve, SPIs unambiguous."""
    src = cfg.source
    peers = {}
    for i, p in enumerate(cfg.peers):
        if p.name in peers:
            raise ConfigError(f"{src}: peer[{i}] ({p.name!r}), field 'name': duplicate peer name")
        peers[p.name] = p
    sas, inbound = {}, {}
    for i, s in enumerate(cfg.sas):
        at = f"{src}: sa[{i}] ({s.name!r})"
        if s.name in sas:
            raise ConfigError(f"{at}, field 'name': duplicate SA name")
        sas[s.name] = s
        if s.peer not in peers:
            raise ConfigError(f"{at}, field 'peer': no peer named {s.peer!r}")
        if s.dir == "in":
            key = (s.proto, s.spi, s.dst, s.src)
            if key in inbound:
                raise ConfigError(f"{at}, field 'spi': duplicate inbound SPI {s.spi:#x} "
                                  f"(same as {inbound[key]!r})")
            inbound[key] = s.name
    for i, r in enumerate(cfg.spd):
        at = f"{src}: spd[{i}]"
        if r.sa is not None:
            if r.sa not in sas:
                raise ConfigError(f"{at}, field 'sa': no SA named {r.sa!r}")
            if sas[r.sa].dir != r.dir:
                raise ConfigError(f"{at}, field 'sa': SA {r.sa!r} is dir={sas[r.sa].dir}, the rule dir={r.dir}")
        if r.peer is not None and r.peer not in peers:
            raise ConfigError(f"{at}, field 'peer': no peer named {r.peer!r}")
    for i, t in enumerate(cfg.templates):
        if t.peer is not None and t.peer not in peers:
            raise ConfigError(f"{src}: template[{i}], field 'peer': no peer named {t.peer!r}")


_TOP_LEVEL = {"device", "peer", "sa", "spd", "template"}


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    for key in doc:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{source}: unknown table [{key}] (expected one of "
                              f"{', '.join(sorted(_TOP_LEVEL))})")

    def tables(name):
        value = doc.get(name, [])
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise ConfigError(f"{source}: '{name}' must be an array of tables ([[{name}]])")
        return value

    device = doc.get("device", {})
    if not isinstance(device, dict):
        raise ConfigError(f"{source}: 'device' must be a table ([device])")
    cfg = Config(
        device=_device(source, device),
        peers=[_peer(source, i, t) for i, t in enumerate(tables("peer"))],
        sas=[_sa(source, i, t) for i, t in enumerate(tables("sa"))],
        spd=[_spd(source, i, t) for i, t in enumerate(tables("spd"))],
        templates=[_template(source, i, t) for i, t in enumerate(tables("template"))],
        source=source,
    )
    check_references(cfg)
    return cfg


def load_config(path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse_config(text, str(path))
