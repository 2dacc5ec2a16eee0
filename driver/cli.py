"""The driver's `latchnic` subcommands, in the style of `ip xfrm`:

  latchnic peer     add name N claims PREFIX[,PREFIX] | del NAME | list
  latchnic sa       add name N dir in|out spi X ... | del NAME | list [--keys]
  latchnic spd      add dir D ... action A [index I] | del DIR INDEX | list
  latchnic template add kind K ... | del ID | list
  latchnic latch    list | show SLOT | release SLOT
  latchnic stats [--clear] | caps | monitor | apply CFG.toml
  latchnic who      PROTO LOCAL:PORT REMOTE:PORT | --pid PID
  latchnic daemon   (sock_diag -> templates)       latchnic nic (the software NIC)

`add` arguments are the configuration file's field names and values and go
through the same entry parser as a file. Every listing takes -j (JSON). The
device (--device or $LATCHNIC_DEVICE) is a control socket or mmap:PATH[@OFFSET]. Errors
name the bad argument, exit with status 2 and change nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from latchnic.config import ConfigError, load_config

from .backend import Backend, BackendError
from .entries import ArgumentError, argument_message, from_table, table_from_words

EXIT_ERROR = 2


class CliError(Exception):
    pass


def _fail(args, msg: str) -> int:
    print(f"latchnic {args.cmd_path}: {msg}", file=sys.stderr)
    return EXIT_ERROR


def _open(args) -> Backend:
    from .remote_backend import open_device
    return open_device(args.device)


def _int_arg(text: str, name: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise CliError(f"argument '{name}': expected an integer, got {text!r}") from None


def _out(args, data, text_fn):
    if args.json:
        print(json.dumps(data, indent=None if isinstance(data, list) else 1, sort_keys=False))
    else:
        text_fn(data)


def _run(fn):
    """Wrap a command: device and argument errors become one message and status 2."""
    def wrapper(args) -> int:
        try:
            with _open(args) as dev:
                return fn(args, dev) or 0
        except (BackendError, ConfigError) as e:
            return _fail(args, argument_message(str(e), "cli"))
        except (CliError, ArgumentError) as e:
            return _fail(args, str(e))
    return wrapper


# ----------------------------------------------------------------- tables

def _add(kind):
    def cmd(args, dev: Backend):
        extra = ("index",) if kind == "spd" else ()
        table, others = table_from_words(args.words, extra)
        try:
            obj = from_table(kind, table, "cli")
        except ConfigError as e:
            raise CliError(argument_message(str(e), "cli")) from None
        if kind == "spd":
            dev.add_spd(obj, others.get("index"))
        elif kind == "template":
            tid = dev.add_template(obj)
            print(json.dumps({"id": tid}) if args.json else f"template {tid}")
        else:
            getattr(dev, f"add_{kind}")(obj)
    return cmd


def _fields(t: dict, skip=()) -> str:
    parts = []
    for k, v in t.items():
        if k in skip:
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v)) or "-"
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif k == "spi":
            v = f"{v:#010x}"
        parts.append(f"{k} {v}")
    return " ".join(parts)


def _peer_list(args, dev):
    def text(rows):
        for r in rows:
            print(f"peer {r['name']} index {r['index']} claims {','.join(r['claims']) or '-'}")
    _out(args, dev.peers(), text)


def _sa_list(args, dev):
    def text(rows):
        for r in rows:
            c = r.get("counters", {})
            print(f"sa {r['name']} " + _fields(r, ("name", "counters")))
            drops = " ".join(f"{k} {v}" for k, v in sorted(c.get("drops", {}).items()))
            extra = f"seq {c['seq']}" if "seq" in c else f"replay_top {c.get('replay_top', 0)}"
            print(f"    packets {c.get('packets', 0)} bytes {c.get('bytes', 0)} {extra}"
                  + (f" drops {drops}" if drops else ""))
    _out(args, dev.sas(args.keys), text)


def _spd_list(args, dev):
    def text(rows):
        for r in rows:
            print(f"spd {r['dir']} {r['index']}: " + _fields(r, ("dir", "index")))
    _out(args, dev.spd(), text)


def _template_list(args, dev):
    def text(rows):
        for r in rows:
            print(f"template {r['id']}: " + _fields(r, ("id",)))
    _out(args, dev.templates(), text)


def _peer_del(args, dev):
    dev.del_peer(args.name)


def _sa_del(args, dev):
    dev.del_sa(args.name)


def _spd_del(args, dev):
    dev.del_spd(args.dir, _int_arg(args.index, "index"))


def _template_del(args, dev):
    dev.del_template(_int_arg(args.id, "id"))


# ---------------------------------------------------------------- latches

NO_LATCH_COUNTERS = "counters n/a (this build keeps no per-latch counters)"


def latch_line(l: dict) -> str:
    head = f"latch {l['slot']} {l['flow']} peer {l['peer']} qop {l['qop']} state {l['state']} "
    if l["packets"] is None:              # absent, not zero (caps: latch_counters false)
        return head + NO_LATCH_COUNTERS
    return (head + f"packets in {l['packets']['in']} out {l['packets']['out']} "
            f"bytes in {l['bytes']['in']} out {l['bytes']['out']} drops {l['drops']}")


def _latch_list(args, dev):
    def text(rows):
        for l in rows:
            print(latch_line(l))
    _out(args, dev.latches(), text)


def _find_latch(dev, slot: int) -> dict:
    for l in dev.latches():
        if l["slot"] == slot:
            return l
    raise CliError(f"argument 'slot': no latch in slot {slot}")


def _latch_show(args, dev):
    l = _find_latch(dev, _int_arg(args.slot, "slot"))

    def text(l):
        print(f"latch {l['slot']}")
        print(f"    flow     {l['flow']}")
        print(f"    peer     {l['peer']} (PAD index {l['peer_index']})")
        print(f"    qop      {l['qop']}")
        print(f"    state    {l['state']}")
        print(f"    template {l['template']}")
        if "created_ns" in l:                # the gateware records no creation time
            print(f"    created  {l['created_ns']} ns")
        if l["packets"] is None:
            print(f"    {NO_LATCH_COUNTERS}")
            return
        print(f"    packets  in {l['packets']['in']} out {l['packets']['out']}")
        print(f"    bytes    in {l['bytes']['in']} out {l['bytes']['out']}")
        print(f"    drops    {l['drops']}")
    _out(args, l, text)


def _latch_release(args, dev):
    dev.release_latch(_int_arg(args.slot, "slot"))


# ------------------------------------------------------------ observation

def _stats(args, dev):
    def text(c):
        for k, v in c["frames"].items():
            print(f"{k:18} {v}")
        for k, v in c["drops"].items():
            print(f"drop {k:13} {v}")
        for name, s in c["sa"].items():
            print(f"sa {name:15} packets {s['packets']} bytes {s['bytes']}")
        if c.get("latch", {}) is None:
            print(f"latch              {NO_LATCH_COUNTERS}")
    _out(args, dev.counters(), text)
    if args.clear:                        # read, then clear (frames between the two go uncounted)
        dev.clear_counters()


def _caps(args, dev):
    def text(c):
        for k, v in c.items():
            print(f"{k:18} {', '.join(map(str, v)) if isinstance(v, list) else v}")
    _out(args, dev.caps(), text)


def event_line(e: dict) -> str:
    flow = f"{e['flow']} " if "flow" in e else ""     # gateware events carry no flow
    return (f"[{e['time_ns']}] latch {e['slot']} {e['old']} -> {e['new']} ({e['cause']}) "
            f"{flow}peer {e['peer']}")


def _monitor(args, dev):
    since = 0 if args.all else dev.events(since=1 << 62)[1]
    seen = 0
    end = time.monotonic() + args.timeout if args.timeout else None
    while True:
        wait = 1.0 if end is None else max(0.0, min(1.0, end - time.monotonic()))
        try:
            events, since = dev.events(since=since, wait=wait)
        except KeyboardInterrupt:
            return 0
        for e in events:
            print(json.dumps(e) if args.json else event_line(e), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                return 0
        if end is not None and time.monotonic() >= end:
            return 0


def _apply(args, dev):
    cfg = load_config(args.config)       # whole file checked before the device is touched
    dev.apply(cfg)
    if not args.json:
        print(f"{args.config}: applied {len(cfg.peers)} peers, {len(cfg.sas)} SAs, "
              f"{len(cfg.spd)} SPD rules, {len(cfg.templates)} templates")


# ---------------------------------------------------------------- parsers

def _common(p: argparse.ArgumentParser, path: str, func, json_flag=True):
    p.add_argument("--device", metavar="ADDRESS",
                   help="the device: a control socket path, or mmap:PATH[@OFFSET] for a "
                        "board's register window (default: $LATCHNIC_DEVICE)")
    if json_flag:
        p.add_argument("-j", "--json", action="store_true", help="JSON output")
    p.set_defaults(func=func, cmd_path=path, json=False)


FIELDS = {
    "peer": "name NAME claims PREFIX[,PREFIX...]",
    "sa": "name N dir in|out spi X proto esp|ah mode transport|tunnel alg aes-gcm-128|aes-gcm-256|"
          "gmac-128|gmac-256 key HEX(key||salt) [icv 8|12|16] [esn true|false] peer NAME "
          "[src ADDR] [dst ADDR] [seq N] [replay_window N]",
    "spd": "dir in|out action protect|bypass|discard [local SEL] [remote SEL] [proto P] "
           "[local_port PORTS] [remote_port PORTS] [sa NAME] [peer NAME] [index I]",
    "template": "kind listener|initiator [local SEL] [remote SEL] [proto tcp|udp|any] "
                "[local_port PORTS] [remote_port PORTS] [peer NAME]",
}


def register(sub):
    for kind, what in (("peer", "PAD peers"), ("sa", "SAD entries"), ("spd", "SPD rules"),
                       ("template", "latch templates")):
        g = sub.add_parser(kind, help=f"{what}: add, del, list")
        gs = g.add_subparsers(dest=f"{kind}_cmd", required=True)
        a = gs.add_parser("add", help=f"add one (KEY VALUE ... with the config file's field names)",
                          epilog=f"fields (as in the TOML [[{kind}]] entry): {FIELDS[kind]}")
        a.add_argument("words", nargs="*", metavar="KEY VALUE")
        _common(a, f"{kind} add", _run(_add(kind)))
        d = gs.add_parser("del", help="delete one")
        if kind == "spd":
            d.add_argument("dir", choices=("in", "out"))
            d.add_argument("index")
            _common(d, "spd del", _run(_spd_del), json_flag=False)
        elif kind == "template":
            d.add_argument("id")
            _common(d, "template del", _run(_template_del), json_flag=False)
        else:
            d.add_argument("name")
            _common(d, f"{kind} del", _run(_peer_del if kind == "peer" else _sa_del), json_flag=False)
        l = gs.add_parser("list", help="list them")
        if kind == "sa":
            l.add_argument("--keys", action="store_true", help="show the keys")
        _common(l, f"{kind} list", _run({"peer": _peer_list, "sa": _sa_list, "spd": _spd_list,
                                         "template": _template_list}[kind]))

    g = sub.add_parser("latch", help="latches: list, show, release")
    gs = g.add_subparsers(dest="latch_cmd", required=True)
    _common(gs.add_parser("list", help="live latches"), "latch list", _run(_latch_list))
    s = gs.add_parser("show", help="one latch")
    s.add_argument("slot")
    _common(s, "latch show", _run(_latch_show))
    r = gs.add_parser("release", help="free a latch now")
    r.add_argument("slot")
    _common(r, "latch release", _run(_latch_release), json_flag=False)

    st = sub.add_parser("stats", help="device counters")
    st.add_argument("--clear", action="store_true", help="then clear every counter (CTRL.clear_counters)")
    _common(st, "stats", _run(_stats))
    _common(sub.add_parser("caps", help="what the device supports"), "caps", _run(_caps))
    m = sub.add_parser("monitor", help="stream latch events as they happen")
    m.add_argument("--count", type=int, default=0, help="stop after N events")
    m.add_argument("--timeout", type=float, default=0, help="stop after S seconds")
    m.add_argument("--all", action="store_true", help="start with the events still in the device's log")
    _common(m, "monitor", _run(_monitor))
    a = sub.add_parser("apply", help="program a whole configuration, all or nothing")
    a.add_argument("config")
    _common(a, "apply", _run(_apply))

    from . import daemon, nic, who
    who.register(sub)
    daemon.register(sub)
    nic.register(sub)
