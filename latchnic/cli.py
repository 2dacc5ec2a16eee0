"""The `latchnic` command. Subcommands:

  run      feed pcap files through an engine (interfaces.md section 2)
  check    validate a configuration file without programming anything
  reasons  list the drop-reason vocabulary
  demo     the main job: a latched connection and two attacks through the simulated NIC
  bench    benchmarks (model packets/s, crypto engine figures)
"""

from __future__ import annotations

import argparse
import json
import sys

from latchnic.config import ConfigError, load_config


def _cmd_run(args) -> int:
    from latchnic.sim.gateware_engine import EngineUnavailable
    from latchnic.sim.pcap import PcapError
    from latchnic.sim.runner import run
    from latchnic.sim.device import DeviceError
    if args.host_in is None and args.wire_in is None:
        print("latchnic run: give at least one of --host-in, --wire-in", file=sys.stderr)
        return 2
    try:
        res = run(args.config, args.engine, args.host_in, args.wire_in, args.host_out,
                  args.wire_out, args.drops, args.apply or [], args.events)
    except (ConfigError, PcapError, EngineUnavailable, DeviceError, ValueError) as e:
        print(f"latchnic run: {e}", file=sys.stderr)
        return 2
    summary = {"engine": args.engine, "in": res.frames_in, "out": res.frames_out,
               "drops": dict(sorted(res.drops.items())), "latch_events": len(res.events)}
    if args.counters:
        with open(args.counters, "w") as f:
            json.dump(res.counters, f, indent=1, sort_keys=True)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"engine {args.engine}: host-in {res.frames_in['host-in']}, wire-in "
              f"{res.frames_in['wire-in']} -> wire-out {res.frames_out['wire-out']}, host-out "
              f"{res.frames_out['host-out']}, dropped {sum(res.drops.values())}")
        for reason, n in sorted(res.drops.items()):
            print(f"  drop {reason:18} {n}")
        for ev in res.events:
            print(f"  latch {ev['slot']:5} {ev['old']:>11} -> {ev['new']:<11} {ev['cause']:14} "
                  f"{ev['flow']} peer {ev['peer']}")
    return 0


def _cmd_check(args) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.config}: ok: {len(cfg.peers)} peers, {len(cfg.sas)} SAs, "
          f"{len(cfg.spd)} SPD rules, {len(cfg.templates)} templates")
    return 0


def _cmd_reasons(args) -> int:
    from latchnic.sim.drops import REASONS
    if args.json:
        print(json.dumps(REASONS, indent=1))
    else:
        for name, text in REASONS.items():
            print(f"{name:18} {text}")
    return 0


def _cmd_demo(args) -> int:
    from latchnic.sim.demo import main as demo
    return demo(args.engine, args.out)


def _cmd_bench(args) -> int:
    import importlib
    mod = importlib.import_module(f"latchnic.bench.{args.which}")
    return mod.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latchnic", description="IPsec offload NIC with connection latching")
    p.add_argument("--device", dest="top_device", metavar="ADDRESS",
                   help="the device of the driver's commands (also accepted after the command): "
                        "a control socket or mmap:PATH[@OFFSET] (default: $LATCHNIC_DEVICE)")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run pcap files through an engine")
    r.add_argument("--config", required=True, help="device configuration (TOML)")
    r.add_argument("--engine", choices=("model", "gateware"), default="model")
    r.add_argument("--host-in", help="frames the local host sends (pcap)")
    r.add_argument("--wire-in", help="frames arriving from the network (pcap)")
    r.add_argument("--host-out", help="write frames delivered to the host (pcap)")
    r.add_argument("--wire-out", help="write frames sent to the network (pcap)")
    r.add_argument("--drops", help="write one JSON object per dropped frame (JSONL)")
    r.add_argument("--apply", action="append", metavar="TIME=CFG.toml",
                   help="re-program the device with another configuration at TIME seconds "
                        "(pcap clock; +TIME: after the first frame); repeatable")
    r.add_argument("--events", help="write latch state transitions (JSONL)")
    r.add_argument("--counters", help="write the device counters at the end (JSON)")
    r.add_argument("-j", "--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("check", help="validate a configuration file")
    c.add_argument("config")
    c.set_defaults(func=_cmd_check)

    s = sub.add_parser("reasons", help="list drop reasons")
    s.add_argument("-j", "--json", action="store_true")
    s.set_defaults(func=_cmd_reasons)

    d = sub.add_parser("demo", help="latched connection, flow stealing and policy drift, end to end")
    d.add_argument("--engine", choices=("model", "gateware"), default="model")
    d.add_argument("--out", help="keep the demo's pcaps and config in this folder")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="benchmarks")
    b.add_argument("which", choices=("model", "crypto", "policy"))
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=_cmd_bench)

    # the host driver's commands (peer/sa/spd/template/latch/stats/...) live
    # beside the driver code; they register themselves here
    import importlib.util
    if importlib.util.find_spec("latchnic.driver.cli") is not None:
        from latchnic.driver.cli import register
        register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None) is None and args.top_device:
        args.device = args.top_device          # `latchnic --device ADDR latch list`
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
