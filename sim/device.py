"""The reference model of the latchnic offload block: one object that holds
the PAD, SAD, SPD, templates and latch table, and processes one frame at a
time in one direction, exactly as the gateware must.

Outbound (host -> wire): parse, latch lookup, SPD, (clone), encapsulate.
Inbound (wire -> host): parse, SAD lookup, replay check, ICV, window update,
decapsulate, then latch enforcement or SPD/PAD checks, (clone), deliver.

Control operations validate first and change state only when valid, so a
rejected operation leaves the device as it was.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from latchnic.config import (SA, Config, ConfigError, DeviceKnobs, Peer, SpdRule, Template,
                             check_references)
from . import ah, esp
from .drops import Drop, REASONS
from .latch import BROKEN, ESTABLISHED, FREE, TIME_WAIT, Latch, LatchEvent, LatchTable, TemplateTable
from .packet import (IPPROTO_AH, IPPROTO_ESP, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP,
                     TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Malformed, Packet, join_transport,
                     parse_frame, parse_ip, split_transport, tunnel_header, with_ethertype)
from .pad import Pad
from .sad import Sad, SaCounters, SaState
from .selectors import Flow, flow_of
from .spd import Spd

NS = 1_000_000_000


class DeviceError(ValueError):
    """A control operation the device refuses; nothing was changed."""


@dataclass
class Verdict:
    """What the device did with one frame."""
    action: str                  # forward | drop
    port: str | None = None      # wire | host (forward only)
    frame: bytes | None = None
    reason: str | None = None    # drop only
    detail: str = ""
    sa: str | None = None
    latch: int | None = None


class ModelDevice:
    """The reference model. Directions: "out" (host to wire), "in" (wire to host)."""

    def __init__(self, knobs: DeviceKnobs = DeviceKnobs(), *, peer_capacity: int = 256,
                 sa_capacity: int = 1024, spd_capacity: int = 1024, template_capacity: int = 256):
        self.knobs = knobs
        self.sa_capacity = sa_capacity
        self.spd_capacity = spd_capacity
        self.pad = Pad(peer_capacity)
        self.sad = Sad()
        self.spd = Spd()
        self.templates = TemplateTable(template_capacity)
        self.latches = LatchTable(knobs.latch_capacity, knobs.latch_ways, knobs.latch_capacity_v6)
        self.now_ns = 0
        self._events: list[LatchEvent] = []
        self.drops: Counter = Counter()
        self.stats: Counter = Counter()

    # ------------------------------------------------------------ control

    @classmethod
    def from_config(cls, cfg: Config) -> "ModelDevice":
        dev = cls(cfg.device)
        dev.apply(cfg)
        return dev

    def caps(self) -> dict:
        return {
            "engine": "model",
            "algorithms": ["aes-gcm-128", "aes-gcm-256", "gmac-128", "gmac-256"],
            "protocols": ["esp", "ah"], "modes": ["transport", "tunnel"],
            "icv_lengths": [8, 12, 16], "esn": True,
            "replay_window": self.knobs.replay_window, "replay_window_max": 4096,
            "peers": self.pad.capacity, "sas": self.sa_capacity, "spd_rules": self.spd_capacity,
            "templates": self.templates.capacity,
            "latches": self.knobs.latch_capacity, "latch_ways": self.knobs.latch_ways,
            "latches_v6": self.knobs.latch_capacity_v6, "latch_counters": True,
        }

    def _config_view(self) -> Config:
        return Config(self.knobs, list(self.pad.peers.values()), [s.spec for s in self.sad],
                      self.spd.all(), list(self.templates.entries.values()), source="device")

    def _check(self, cfg: Config):
        try:
            check_references(cfg)
        except ConfigError as e:
            raise DeviceError(str(e).removeprefix("device: ")) from None
        if len(cfg.peers) > self.pad.capacity:
            raise DeviceError(f"PAD full: {len(cfg.peers)} peers, capacity {self.pad.capacity}")
        if len(cfg.sas) > self.sa_capacity:
            raise DeviceError(f"SAD full: {len(cfg.sas)} SAs, capacity {self.sa_capacity}")
        if len(cfg.spd) > self.spd_capacity:
            raise DeviceError(f"SPD full: {len(cfg.spd)} rules, capacity {self.spd_capacity}")
        if len(cfg.templates) > self.templates.capacity:
            raise DeviceError(f"template table full: capacity {self.templates.capacity}")

    def add_peer(self, peer: Peer):
        if peer.name in self.pad.peers:
            raise DeviceError(f"peer {peer.name!r} exists")
        cfg = self._config_view()
        cfg.peers.append(peer)
        self._check(cfg)
        try:                # indexes live latches pin may leave none free
            self.pad.add(peer, self._pinned_peers())
        except OverflowError as e:
            raise DeviceError(str(e)) from None

    def del_peer(self, name: str):
        if name not in self.pad.peers:
            raise DeviceError(f"no peer named {name!r}")
        users = [s.name for s in self.sad if s.spec.peer == name]
        users += [f"spd rule {r.dir}" for r in self.spd.all() if r.peer == name]
        if users:
            raise DeviceError(f"peer {name!r} is still used by {', '.join(users)}")
        self.pad.remove(name)

    def add_sa(self, sa: SA):
        if sa.name in self.sad.by_name:
            raise DeviceError(f"SA {sa.name!r} exists")
        cfg = self._config_view()
        cfg.sas.append(sa)
        self._check(cfg)
        self.sad.add(SaState(sa, self.knobs.replay_window))
        self._recheck_latches("sa_added")

    def del_sa(self, name: str):
        if name not in self.sad.by_name:
            raise DeviceError(f"no SA named {name!r}")
        self.sad.remove(name)
        self._recheck_latches("sa_deleted")

    def add_spd(self, rule: SpdRule, index: int | None = None):
        """Insert a rule at `index` among the rules of its direction (end by default)."""
        cfg = self._config_view()
        cfg.spd.append(rule)
        self._check(cfg)
        rules = self.spd.rules[rule.dir]
        if index is None:
            index = len(rules)
        if not 0 <= index <= len(rules):
            raise DeviceError(f"SPD {rule.dir} index {index} outside 0..{len(rules)}")
        rules.insert(index, rule)
        self._recheck_latches("spd_changed")

    def del_spd(self, direction: str, index: int):
        rules = self.spd.rules.get(direction)
        if rules is None:
            raise DeviceError(f"bad SPD direction {direction!r} (in or out)")
        if not 0 <= index < len(rules):
            raise DeviceError(f"no SPD {direction} rule at index {index}")
        del rules[index]
        self._recheck_latches("spd_changed")

    def add_template(self, template: Template) -> int:
        if template.peer is not None and template.peer not in self.pad.peers:
            raise DeviceError(f"no peer named {template.peer!r}")
        try:
            return self.templates.add(template)
        except OverflowError as e:
            raise DeviceError(str(e)) from None

    def del_template(self, tid: int):
        if tid not in self.templates.entries:
            raise DeviceError(f"no template with id {tid}")
        self.templates.remove(tid)

    def release_latch(self, slot: int):
        latch = self.latches.slots[slot] if 0 <= slot < len(self.latches.slots) else None
        if latch is None:
            raise DeviceError(f"no latch in slot {slot}")
        self._free(latch, "release")

    def apply(self, cfg: Config):
        """Make the device's tables equal to cfg, all or nothing. SAs whose
        definition is unchanged keep their counters and windows; latches stay
        and are re-checked against the new tables."""
        geometry = lambda d: (d.replay_window, d.latch_capacity, d.latch_ways, d.latch_capacity_v6)
        if geometry(cfg.device) != geometry(self.knobs) and (len(self.sad.by_name) or len(self.latches)):
            raise DeviceError(f"{cfg.source}: [device] replay_window/latch_capacity/latch_ways/"
                              "latch_capacity_v6 cannot change on a live device")
        self._check(cfg)
        keep = {s.name: self.sad.by_name[s.name] for s in cfg.sas
                if s.name in self.sad.by_name and self.sad.by_name[s.name].spec == s}
        try:                # first: indexes live latches pin may leave too few
            self.pad.replace(cfg.peers, self._pinned_peers())
        except OverflowError as e:
            raise DeviceError(f"{cfg.source}: {e}") from None
        if not len(self.sad.by_name) and not len(self.latches):
            self.latches = LatchTable(cfg.device.latch_capacity, cfg.device.latch_ways,
                                      cfg.device.latch_capacity_v6)
        self.knobs = cfg.device
        self.sad = Sad()
        for s in cfg.sas:
            self.sad.add(keep.get(s.name) or SaState(s, self.knobs.replay_window))
        self.spd = Spd(cfg.spd)
        self.templates = TemplateTable(self.templates.capacity)
        for t in cfg.templates:
            self.templates.add(t)
        self._recheck_latches("config_applied")

    # -------------------------------------------------------- observation

    def list_latches(self) -> list[Latch]:
        self.advance(self.now_ns)
        return self.latches.live()

    def peer_name(self, index: int) -> str:
        return self.pad.name_of(index)

    def drain_events(self) -> list[LatchEvent]:
        events, self._events = self._events, []
        return events

    def clear_counters(self):
        """Every counter back to 0 (CTRL.clear_counters): frames, drops per
        reason, each SA's packets/bytes/drops, each latch's packets/bytes/drops.
        Not counters: an SA's sequence number and replay window stay."""
        self.drops.clear()
        self.stats.clear()
        for s in self.sad:
            s.counters = SaCounters()
        for l in self.latches.live():
            l.packets = {"in": 0, "out": 0}
            l.bytes = {"in": 0, "out": 0}
            l.drops = 0

    def counters(self) -> dict:
        return {
            "frames": dict(sorted(self.stats.items())),
            "drops": {r: self.drops[r] for r in REASONS if self.drops[r]},
            "sa": {s.name: s.counters.as_dict() | ({"seq": s.seq} if s.spec.dir == "out" else
                                                   {"replay_top": s.window.top})
                   for s in self.sad},
            "latch": {l.slot: {"packets": dict(l.packets), "bytes": dict(l.bytes), "drops": l.drops}
                      for l in self.latches.live()},
        }

    # ------------------------------------------------------------ latches

    def _pinned_peers(self) -> set[int]:
        return {l.peer for l in self.latches.live()}

    def _event(self, latch: Latch, old: str, new: str, cause: str):
        self._events.append(LatchEvent(self.now_ns, latch.slot, latch.flow, latch.peer, old, new, cause))

    def _set_state(self, latch: Latch, state: str, cause: str):
        if latch.state != state:
            old, latch.state = latch.state, state
            self._event(latch, old, state, cause)

    def _free(self, latch: Latch, cause: str):
        self.latches.free(latch)
        self._event(latch, latch.state, FREE, cause)

    def advance(self, now_ns: int):
        """Move the device clock; latches whose timer ran out are freed."""
        if now_ns > self.now_ns:
            self.now_ns = now_ns
        for latch in self.latches.expired(self.now_ns):
            self._free(latch, "timer")

    def _out_choice(self, flow: Flow) -> tuple[SaState | None, str | None]:
        """The SA the outbound SPD selects for a flow, or the drop reason a
        latched flow gets when it selects none that is usable."""
        rule = self.spd.lookup("out", flow)
        if rule is None:
            return None, "no_policy"
        if rule.action == "discard":
            return None, "spd_discard"
        if rule.action == "bypass":
            return None, "latch_clear"
        sa = self.sad.get(rule.sa)
        if sa is None:
            return None, "no_sa"
        return sa, None

    def _compatible(self, latch: Latch, sa: SaState) -> str | None:
        """None if the SA may carry the latched flow, else the drop reason."""
        if self.pad.index.get(sa.spec.peer) != latch.peer:
            return "latch_peer"
        if not sa.qop.satisfies(latch.qop):
            return "latch_qop"
        return None

    def _healthy(self, latch: Latch) -> bool:
        """A compatible SA exists both ways: the outbound SPD selects one, and
        some inbound SA could deliver the flow."""
        sa, _why = self._out_choice(latch.flow)
        if sa is None or sa.exhausted or self._compatible(latch, sa):
            return False
        return any(s.spec.dir == "in" and not self._compatible(latch, s) for s in self.sad)

    def _recheck_latches(self, cause: str):
        """After every table change: latches without a compatible SA go BROKEN,
        BROKEN ones with one again are ESTABLISHED. TIME_WAIT stays as it is."""
        for latch in self.latches.live():
            if latch.state == TIME_WAIT:
                continue
            healthy = self._healthy(latch)
            if latch.state == ESTABLISHED and not healthy:
                self._set_state(latch, BROKEN, cause)
            elif latch.state == BROKEN and healthy:
                self._set_state(latch, ESTABLISHED, cause)

    @staticmethod
    def _clone_trigger(pkt: Packet) -> bool:
        """What may create a connection: a TCP SYN without ACK, any UDP datagram."""
        if pkt.proto == IPPROTO_TCP:
            return pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        return pkt.proto == IPPROTO_UDP

    def _clone(self, pkt: Packet, flow: Flow, sa: SaState) -> Latch | None:
        """Clone a latch from the first matching template, if any (fails closed)."""
        if flow.local_port is None or not self._clone_trigger(pkt):
            return None
        hit = self.templates.match(flow)
        if hit is None:
            return None
        tid, template = hit
        peer = self.pad.index[sa.spec.peer]
        if template.peer is not None and self.pad.index.get(template.peer) != peer:
            raise Drop("latch_peer", f"template {tid} expects peer {template.peer!r}")
        latch = self.latches.insert(flow, peer=peer, qop=sa.qop, template=tid,
                                    created_ns=self.now_ns, last_ns=self.now_ns)
        if latch is None:
            raise Drop("latch_table_full", f"set {self.latches.set_of(flow)} full")
        self._event(latch, FREE, ESTABLISHED, "clone")
        return latch

    def _track(self, latch: Latch, pkt: Packet, direction: str, nbytes: int):
        """Per-packet latch upkeep: counters, TCP teardown, UDP idle timer."""
        latch.packets[direction] += 1
        latch.bytes[direction] += nbytes
        latch.last_ns = self.now_ns
        if pkt.proto == IPPROTO_UDP:
            self.latches.set_deadline(latch, self.now_ns + int(self.knobs.udp_idle_s * NS))
            return
        flags = pkt.tcp_flags
        if latch.state == TIME_WAIT and flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
            # a new connection reusing the 4-tuple after close, same peer
            latch.fin_in = latch.fin_out = False
            self.latches.set_deadline(latch, None)
            self._set_state(latch, ESTABLISHED, "syn")
            return
        if flags & TCP_FIN:
            if direction == "out":
                latch.fin_out = True
            else:
                latch.fin_in = True
        if latch.state != TIME_WAIT and (flags & TCP_RST or (latch.fin_in and latch.fin_out)):
            self._set_state(latch, TIME_WAIT, "rst" if flags & TCP_RST else "fin")
            self.latches.set_deadline(latch, self.now_ns + int(self.knobs.time_wait_s * NS))

    # ----------------------------------------------------------- datapath

    def process(self, frame: bytes, direction: str, now_ns: int | None = None) -> Verdict:
        """Process one frame: "out" comes from the host, "in" from the wire."""
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        if now_ns is not None:
            self.advance(now_ns)
        self.stats[f"{direction}_frames"] += 1
        sa_seen: list[SaState] = []
        latch_seen: list[Latch] = []
        try:
            try:
                pkt = parse_frame(frame)
            except Malformed as e:
                raise Drop(e.reason, str(e)) from None
            if pkt is None:                      # not IP: IPsec does not apply
                self.stats[f"{direction}_non_ip"] += 1
                return self._forward(direction, frame)
            if direction == "out":
                out = self._outbound(pkt, sa_seen, latch_seen)
            else:
                out = self._inbound(pkt, sa_seen, latch_seen)
            return out
        except Drop as d:
            self.drops[d.reason] += 1
            self.stats[f"{direction}_drops"] += 1
            for s in sa_seen:
                s.counters.drops[d.reason] += 1
            for l in latch_seen:
                l.drops += 1
            return Verdict("drop", reason=d.reason, detail=d.detail,
                           sa=sa_seen[0].name if sa_seen else None,
                           latch=latch_seen[0].slot if latch_seen else None)

    def _forward(self, direction: str, frame: bytes, sa: SaState | None = None,
                 latch: Latch | None = None) -> Verdict:
        port = "wire" if direction == "out" else "host"
        self.stats[f"{direction}_forwarded"] += 1
        return Verdict("forward", port, frame, sa=sa.name if sa else None,
                       latch=latch.slot if latch else None)

    def _outbound(self, pkt: Packet, sa_seen, latch_seen) -> Verdict:
        flow = flow_of(pkt, "out")
        latch = self.latches.lookup(flow) if flow.local_port is not None else None
        if latch is not None:
            latch_seen.append(latch)
            if latch.state == BROKEN:
                raise Drop("latch_broken")
            sa, why = self._out_choice(flow)
            why = why or self._compatible(latch, sa)
            if why:
                # the latch outranks the SPD: never clear, never another peer
                if why != "spd_discard":
                    self._set_state(latch, BROKEN, why)
                raise Drop(why)
        else:
            rule = self.spd.lookup("out", flow)
            if rule is None:
                raise Drop("no_policy")
            if rule.action == "discard":
                raise Drop("spd_discard")
            if rule.action == "bypass":
                self.stats["out_bypass"] += 1
                return self._forward("out", pkt.frame[:pkt.l3_end])   # Ethernet padding dropped
            sa = self.sad.get(rule.sa)
            if sa is None:
                raise Drop("no_sa", f"rule's SA {rule.sa!r} is not in the SAD")
        sa_seen.append(sa)
        if sa.exhausted:
            raise Drop("seq_exhausted", sa.name)
        if sa.spec.mode == "transport" and pkt.is_fragment:
            raise Drop("fragment", "transport mode cannot protect a fragment")
        if self._protected_len(sa, pkt) > 0xFFFF:
            raise Drop("unsupported", "protected packet would not fit a 16-bit IP length")
        if sa.spec.proto == "ah" and sa.spec.mode == "transport":
            ah.check_header(pkt.version, pkt.frame[pkt.l3:pkt.payload_off])
        if latch is None:
            latch = self._clone(pkt, flow, sa)
        seq = sa.next_seq()
        ip = self._encapsulate(sa, pkt, seq)
        nbytes = pkt.l3_end - pkt.payload_off
        sa.counters.packets += 1
        sa.counters.bytes += nbytes
        if latch is not None:
            self._track(latch, pkt, "out", nbytes)
        l2 = pkt.frame[:pkt.l2_len]
        if sa.spec.mode == "tunnel":
            l2 = with_ethertype(l2, sa.spec.src.version)
        return self._forward("out", l2 + ip, sa, latch)

    @staticmethod
    def _protected_len(sa: SaState, pkt: Packet) -> int:
        """What the protected packet's IPv4 total length / IPv6 payload length
        field would hold; checked before any state changes (the NIC does not
        fragment after encapsulation)."""
        spec = sa.spec
        if spec.mode == "tunnel":
            version = spec.src.version
            data = pkt.l3_end - pkt.l3
            hdr = 20 if version == 4 else 0
        else:
            version = pkt.version
            data = pkt.l3_end - pkt.payload_off
            hdr = pkt.hdr_len - (0 if version == 4 else 40)
        if spec.proto == "esp":
            body = esp.ESP_HDR + esp.IV_LEN + data + (-(data + 2)) % 4 + 2 + spec.icv
        else:
            body = ah.ah_len(version) + data
        return hdr + body

    def _encapsulate(self, sa: SaState, pkt: Packet, seq: int) -> bytes:
        spec = sa.spec
        proto = IPPROTO_ESP if spec.proto == "esp" else IPPROTO_AH
        if spec.mode == "tunnel":
            inner = pkt.ip_bytes()
            nh = IPPROTO_IPIP if pkt.version == 4 else IPPROTO_IPV6
            version = spec.src.version
            if spec.proto == "esp":
                body = esp.seal(sa, inner, nh, seq)
                return tunnel_header(spec.src, spec.dst, pkt, proto, len(body), seq) + body
            n = ah.ah_len(version)
            outer = tunnel_header(spec.src, spec.dst, pkt, proto, n + len(inner), seq)
            return outer + ah.seal(sa, version, outer, nh, inner, seq) + inner
        hdr, payload = split_transport(pkt)
        if spec.proto == "esp":
            return join_transport(pkt, hdr, proto, esp.seal(sa, payload, pkt.proto, seq))
        n = ah.ah_len(pkt.version)
        final = join_transport(pkt, hdr, proto, bytes(n) + payload)
        final_hdr = final[:len(hdr)]
        return final_hdr + ah.seal(sa, pkt.version, final_hdr, pkt.proto, payload, seq) + payload

    def _inbound(self, pkt: Packet, sa_seen, latch_seen) -> Verdict:
        sa = None
        if pkt.proto in (IPPROTO_ESP, IPPROTO_AH):
            if pkt.is_fragment:
                raise Drop("fragment", "ESP/AH fragment: the NIC does not reassemble")
            sa, pkt = self._decapsulate(pkt, sa_seen)
        flow = flow_of(pkt, "in")
        latch = self.latches.lookup(flow) if flow.local_port is not None else None
        if latch is not None:
            latch_seen.append(latch)
            if latch.state == BROKEN:
                raise Drop("latch_broken")
            if sa is None:
                raise Drop("latch_clear")
            why = self._compatible(latch, sa)
            if why:
                raise Drop(why, f"SA {sa.name!r}")
        else:
            rule = self.spd.lookup("in", flow)
            if rule is None:
                raise Drop("no_policy")
            if rule.action == "discard":
                raise Drop("spd_discard")
            if sa is None:
                if rule.action == "protect":
                    raise Drop("spd_clear")
                self.stats["in_bypass"] += 1
                return self._forward("in", pkt.frame[:pkt.l3_end])
            if rule.action == "bypass":
                raise Drop("spd_mismatch", "protected packet matched a BYPASS rule")
            if (rule.sa is not None and rule.sa != sa.name) or (
                    rule.peer is not None and rule.peer != sa.spec.peer):
                raise Drop("spd_mismatch", f"rule pinned to {rule.sa or rule.peer!r}")
            peer = self.pad.get(sa.spec.peer)
            if peer is None or not peer.may_claim(flow.version, flow.remote):
                raise Drop("pad_claim", f"peer {sa.spec.peer!r}")
            latch = self._clone(pkt, flow, sa)
        nbytes = pkt.l3_end - pkt.payload_off
        if sa is not None:
            sa.counters.packets += 1
            sa.counters.bytes += nbytes
        if latch is not None:
            self._track(latch, pkt, "in", nbytes)
        return self._forward("in", pkt.frame, sa, latch)

    def _decapsulate(self, pkt: Packet, sa_seen) -> tuple[SaState, Packet]:
        """SAD lookup, replay check, ICV, window update, and the packet as it
        was before protection (parsed again: its headers are now trusted
        only as far as the parser says)."""
        frame, off = pkt.frame, pkt.payload_off
        data = frame[off:pkt.l3_end]
        if pkt.proto == IPPROTO_ESP:
            spi, seq_low = esp.header(data)
            kind = "esp"
        else:
            _nh, spi, seq_low = ah.header(data, pkt.version)
            kind = "ah"
        sa = self.sad.lookup_in(kind, spi, pkt.version, pkt.dst, pkt.src)
        if sa is None:
            raise Drop("no_sa", f"{kind} SPI {spi:#x}")
        sa_seen.append(sa)
        seq = sa.window.infer(seq_low)
        if seq is None or not sa.window.check(seq):
            raise Drop("replay", f"seq {seq_low}")
        if kind == "esp":
            clear = esp.open_(sa, data, seq)
            sa.window.update(seq)
            inner, nh = esp.strip_trailer(clear)
        else:
            n = ah.ah_len(pkt.version)
            ah.verify(sa, pkt.version, frame[pkt.l3:off], data[:n], data[n:], seq)
            sa.window.update(seq)
            inner, nh = data[n:], data[0]
        l2 = frame[:pkt.l2_len]
        if sa.spec.mode == "tunnel":
            if nh not in (IPPROTO_IPIP, IPPROTO_IPV6):
                raise Drop("malformed", f"tunnel SA carries next header {nh}")
            version = 4 if nh == IPPROTO_IPIP else 6
            if inner and inner[0] >> 4 != version:
                raise Drop("malformed", f"next header {nh} but the inner packet is IPv{inner[0] >> 4}")
            new_frame = with_ethertype(l2, version) + inner
        else:
            hdr = bytearray(frame[pkt.l3:off])
            new_frame = l2 + join_transport(pkt, hdr, nh, inner)
        try:
            inner_pkt = parse_ip(new_frame, len(l2))
        except Malformed as e:
            raise Drop(e.reason, f"inner packet: {e}") from None
        if inner_pkt.l3_end != len(new_frame):
            raise Drop("malformed", "inner packet length disagrees with its ESP/AH payload")
        return sa, inner_pkt
