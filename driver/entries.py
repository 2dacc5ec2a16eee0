"""Table entries in the configuration file's own terms.

Everything the driver accepts (CLI keyword arguments, control-socket requests)
is turned into a one-entry TOML table and run through the configuration
module's entry parsers, so a bad `latchnic sa add` argument gets exactly the
check and message a bad `[[sa]]` entry in a file gets. The reverse direction
(typed object -> TOML table) serves listings and the control socket.
"""

from __future__ import annotations

import json
import re

from latchnic import config as _cfg
from latchnic.config import SA, Config, ConfigError, Peer, SpdRule, Template

KINDS = ("peer", "sa", "spd", "template")

# TOML types of the fields whose CLI text is not a string in the file
_INT_FIELDS = {"spi", "icv", "seq", "replay_window"}
_BOOL_FIELDS = {"esn"}
_LIST_FIELDS = {"claims"}
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}

_PARSERS = {"peer": _cfg._peer, "sa": _cfg._sa, "spd": _cfg._spd, "template": _cfg._template}
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}


class ArgumentError(ValueError):
    """A CLI argument list that cannot even be made into a table."""


def table_from_words(words: list[str], extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """`key value key value ...` -> (TOML table, extra CLI-only keys).

    Values get the TOML type the config file would hold (spi 0x1001 -> int,
    esn true -> bool, claims A,B -> list); a value that does not convert stays
    a string, so the entry parser reports it exactly as for a file."""
    table, others = {}, {}
    if len(words) % 2:
        raise ArgumentError(f"argument '{words[-1]}' needs a value")
    for key, value in zip(words[0::2], words[1::2]):
        target = others if key in extra else table
        if key in _LIST_FIELDS:
            target.setdefault(key, []).extend(v for v in value.split(",") if v != "")
            continue
        if key in target:
            raise ArgumentError(f"argument '{key}' given twice")
        if key in _INT_FIELDS or key in extra:
            try:
                target[key] = int(value, 0)
                continue
            except ValueError:
                pass
        elif key in _BOOL_FIELDS and value.lower() in _BOOL_WORDS:
            target[key] = _BOOL_WORDS[value.lower()]
            continue
        target[key] = value
    return table, others


def from_table(kind: str, table: dict, source: str):
    """One entry through the configuration file's own parser (ConfigError on a bad one)."""
    if kind not in _PARSERS:
        raise ConfigError(f"{source}: unknown entry kind {kind!r}")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: an entry must be a table")
    return _PARSERS[kind](source, 0, table)


# ------------------------------------------------------------- to tables

def _sel(sel):
    return "any" if sel is None else sel.text


def _port(p):
    if p is None:
        return "any"
    if not p.opaque and p.lo == p.hi:
        return p.lo
    return str(p)


def _proto(n):
    return "any" if n is None else _PROTO_NAMES.get(n, n)


def to_table(obj, keys: bool = True) -> dict:
    """A typed entry as the TOML table that would define it (keys=False hides SA keys)."""
    if isinstance(obj, Peer):
        return {"name": obj.name, "claims": [c.text for c in obj.claims]}
    if isinstance(obj, SA):
        t = {"name": obj.name, "dir": obj.dir, "spi": obj.spi, "proto": obj.proto,
             "mode": obj.mode, "alg": obj.alg}
        if keys:
            t["key"] = (obj.key + obj.salt).hex()
        t |= {"icv": obj.icv, "esn": obj.esn, "peer": obj.peer,
              "src": "any" if obj.src is None else str(obj.src),
              "dst": "any" if obj.dst is None else str(obj.dst), "seq": obj.seq}
        if obj.replay_window is not None:
            t["replay_window"] = obj.replay_window
        return t
    if isinstance(obj, (SpdRule, Template)):
        t = {"dir": obj.dir, "action": obj.action} if isinstance(obj, SpdRule) else {"kind": obj.kind}
        t |= {"local": _sel(obj.local), "remote": _sel(obj.remote), "proto": _proto(obj.proto),
              "local_port": _port(obj.local_port), "remote_port": _port(obj.remote_port)}
        if isinstance(obj, Template) and obj.kind == "listener":
            del t["remote"], t["remote_port"]
        if getattr(obj, "sa", None) is not None:
            t["sa"] = obj.sa
        if obj.peer is not None:
            t["peer"] = obj.peer
        return t
    raise TypeError(f"not a table entry: {obj!r}")


# ------------------------------------------------------------ whole file

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are a subset of TOML basic-string escapes
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def config_to_toml(cfg: Config) -> str:
    """A Config as the TOML text that parses back to it (used to ship a
    whole configuration over the control socket)."""
    d = cfg.device
    lines = ["[device]"]
    for k in ("replay_window", "time_wait_s", "udp_idle_s", "latch_capacity", "latch_ways",
              "latch_capacity_v6"):
        lines.append(f"{k} = {_toml_value(getattr(d, k))}")
    for kind, items in (("peer", cfg.peers), ("sa", cfg.sas), ("spd", cfg.spd),
                        ("template", cfg.templates)):
        for item in items:
            lines.append(f"\n[[{kind}]]")
            for k, v in to_table(item).items():
                lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- errors

_ENTRY_FIELD = re.compile(r"^(?:\w+\[\d+\](?: \(.*?\))?), field '(?P<field>[^']+)': (?P<msg>.*)$", re.S)
_ENTRY_ONLY = re.compile(r"^(?:\w+\[\d+\](?: \(.*?\))?): (?P<msg>.*)$", re.S)


def argument_message(msg: str, source: str | None = None) -> str:
    """Rewrite an entry error ("sa[0] ('x'), field 'key': ...") so that it names
    the command-line argument ("argument 'key': ...")."""
    if source and msg.startswith(source + ": "):
        msg = msg[len(source) + 2:]
    m = _ENTRY_FIELD.match(msg)
    if m:
        return f"argument '{m['field']}': {m['msg']}"
    m = _ENTRY_ONLY.match(msg)
    if m:
        return m["msg"]
    return msg
