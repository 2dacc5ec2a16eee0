"""The pcap runner: feed host-side and wire-side frames through an engine in
timestamp order and write what comes out (interfaces.md section 2).

Ordering: frames are sorted by timestamp; on equal timestamps host-in frames
come before wire-in frames, and each file keeps its own order. Timed
re-configurations (--apply) take effect before the first frame at or after
their time. Output frames keep the timestamp of the input that caused them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from latchnic.config import Config, load_config
from .pcap import PcapWriter, read_pcap

SOURCES = (("host-in", "out"), ("wire-in", "in"))


@dataclass
class RunResult:
    frames_in: dict = field(default_factory=lambda: {"host-in": 0, "wire-in": 0})
    frames_out: dict = field(default_factory=lambda: {"host-out": 0, "wire-out": 0})
    drops: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    events: list = field(default_factory=list)


def parse_apply(spec: str) -> tuple[str, float, str]:
    """'T=FILE' (T seconds on the pcap clock) or '+T=FILE' (after the first frame)."""
    if "=" not in spec:
        raise ValueError(f"--apply {spec!r}: expected TIME=CONFIG.toml")
    when, path = spec.split("=", 1)
    rel = when.startswith("+")
    try:
        t = float(when[1:] if rel else when)
    except ValueError:
        raise ValueError(f"--apply {spec!r}: {when!r} is not a time in seconds") from None
    return ("relative" if rel else "absolute"), t, path


def make_engine(name: str, cfg: Config):
    if name == "model":
        from .device import ModelDevice
        return ModelDevice.from_config(cfg)
    if name == "gateware":
        from .gateware_engine import GatewareDevice
        return GatewareDevice.from_config(cfg)
    raise ValueError(f"unknown engine {name!r} (model or gateware)")


def event_json(ev, dev) -> dict:
    from .flowfmt import flow_text
    return {"time_ns": ev.time_ns, "slot": ev.slot, "flow": flow_text(ev.flow),
            "peer": dev.peer_name(ev.peer), "old": ev.old, "new": ev.new, "cause": ev.cause}


def run(config: str | Path, engine: str = "model", host_in=None, wire_in=None, host_out=None,
        wire_out=None, drops=None, applies: list[str] = (), events=None) -> RunResult:
    cfg = load_config(config)
    schedule = []
    for spec in applies:
        kind, t, path = parse_apply(spec)
        schedule.append((kind, t, load_config(path)))     # every file checked before any frame
    dev = make_engine(engine, cfg)

    inputs = []
    nanos = False
    for (label, direction), path in zip(SOURCES, (host_in, wire_in)):
        if path is None:
            continue
        records, ns = read_pcap(path)
        nanos |= ns
        for i, rec in enumerate(records):
            inputs.append((rec.time_ns, 0 if label == "host-in" else 1, i, label, direction, rec.frame))
    inputs.sort(key=lambda r: r[:3])
    start = inputs[0][0] if inputs else 0
    pending = sorted(((int(t * 1e9) + (start if kind == "relative" else 0)), i, c)
                     for i, (kind, t, c) in enumerate(schedule))

    result = RunResult()
    writers = {}
    for port, path in (("host", host_out), ("wire", wire_out)):
        writers[port] = PcapWriter(path, nanos) if path is not None else None
    drop_file = open(drops, "w") if drops is not None else None
    try:
        for t, _src, index, label, direction, frame in inputs:
            while pending and pending[0][0] <= t:
                when, _, newcfg = pending.pop(0)
                dev.advance(when)
                dev.apply(newcfg)
            result.frames_in[label] += 1
            v = dev.process(frame, direction, t)
            if v.action == "forward":
                result.frames_out[f"{v.port}-out"] += 1
                if writers[v.port] is not None:
                    writers[v.port].write(t, v.frame)
            else:
                result.drops[v.reason] = result.drops.get(v.reason, 0) + 1
                if drop_file is not None:
                    rec = {"input": label, "index": index, "time_ns": t, "dir": direction,
                           "reason": v.reason, "sa": v.sa, "latch": v.latch}
                    drop_file.write(json.dumps(rec) + "\n")
        for when, _, newcfg in pending:          # re-configurations after the last frame
            dev.advance(when)
            dev.apply(newcfg)
    finally:
        for w in writers.values():
            if w is not None:
                w.close()
        if drop_file is not None:
            drop_file.close()
    result.counters = dev.counters()
    result.events = [event_json(e, dev) for e in dev.drain_events()]
    if events is not None:
        with open(events, "w") as f:
            for e in result.events:
                f.write(json.dumps(e) + "\n")
    return result
