"""Bad configuration files: each raises ConfigError whose message names the
file, the entry (e.g. `sa[1] ('alice-out')`) and the field, and the CLI
(`latchnic check`, `latchnic run`) exits 2 with that message on stderr and
programs/writes nothing. Good files (the shipped example, the contract's
example once completed) load."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from latchnic.cli import main
from latchnic.config import ConfigError, load_config, parse_config
from latchnic.sim.device import ModelDevice

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "gateway.toml"
INTERFACES_MD = REPO.parent / "shared" / "docs" / "interfaces.md"

DEL = object()          # override value: leave the field out


class Toml(str):
    """A value written into the file as is (hex, nan, arrays of mixed type...)."""


def render(value) -> str:
    if isinstance(value, Toml):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    raise TypeError(value)


def table(header: str, fields: dict, **overrides) -> str:
    merged = dict(fields)
    merged.update(overrides)
    lines = [header] + [f"{k} = {render(v)}" for k, v in merged.items() if v is not DEL]
    return "\n".join(lines) + "\n"


DEVICE = {"replay_window": 128, "time_wait_s": 60, "udp_idle_s": 30}
ALICE = {"name": "alice@example.org", "claims": ["203.0.113.0/24"]}
BOB = {"name": "bob@example.org", "claims": ["203.0.113.0/24", "2001:db8:b::/48"]}
SA_IN = {"name": "alice-in", "dir": "in", "spi": Toml("0x00001001"), "proto": "esp",
         "mode": "transport", "alg": "aes-gcm-128", "key": "000102030405060708090a0b0c0d0e0fcafebabe",
         "icv": 16, "esn": False, "peer": "alice@example.org", "src": "203.0.113.5", "dst": "192.0.2.1"}
SA_OUT = {"name": "alice-out", "dir": "out", "spi": Toml("0x00002001"), "proto": "esp",
          "mode": "transport", "alg": "aes-gcm-128", "key": "101112131415161718191a1b1c1d1e1fdeadbeef",
          "icv": 16, "peer": "alice@example.org", "src": "192.0.2.1", "dst": "203.0.113.5"}
SA_AH = {"name": "bob-ah-in", "dir": "in", "spi": Toml("0x00001002"), "proto": "ah",
         "mode": "transport", "alg": "gmac-256",
         "key": "202122232425262728292a2b2c2d2e2f202122232425262728292a2b2c2d2e2f01234567",
         "icv": 16, "peer": "bob@example.org", "src": "203.0.113.9", "dst": "192.0.2.1"}
SPD_OUT = {"dir": "out", "local": "192.0.2.1/32", "remote": "203.0.113.0/24", "proto": "tcp",
           "local_port": "any", "remote_port": "80-443", "action": "protect", "sa": "alice-out"}
SPD_IN = {"dir": "in", "local": "192.0.2.1/32", "remote": "203.0.113.0/24", "action": "protect",
          "peer": "alice@example.org"}
LISTENER = {"kind": "listener", "local": "192.0.2.1", "proto": "tcp", "local_port": 22}
INITIATOR = {"kind": "initiator", "local": "192.0.2.1", "remote": "203.0.113.5", "proto": "tcp",
             "local_port": 40000, "remote_port": 443, "peer": "alice@example.org"}


def config(device=None, peers=None, sas=None, spd=None, templates=None, extra="") -> str:
    """A valid file by default; each argument replaces one section."""
    parts = [table("[device]", device if device is not None else DEVICE)]
    parts += [table("[[peer]]", p) for p in (peers if peers is not None else [ALICE, BOB])]
    parts += [table("[[sa]]", s) for s in (sas if sas is not None else [SA_IN, SA_OUT, SA_AH])]
    parts += [table("[[spd]]", r) for r in (spd if spd is not None else [SPD_OUT, SPD_IN])]
    parts += [table("[[template]]", t) for t in
              (templates if templates is not None else [LISTENER, INITIATOR])]
    return "\n".join(parts) + extra


def with_sa(i: int, **over) -> str:
    sas = [SA_IN, SA_OUT, SA_AH]
    sas[i] = {**sas[i], **over}
    return config(sas=sas)


def with_spd(i: int, **over) -> str:
    rules = [SPD_OUT, SPD_IN]
    rules[i] = {**rules[i], **over}
    return config(spd=rules)


def with_template(i: int, **over) -> str:
    ts = [LISTENER, INITIATOR]
    ts[i] = {**ts[i], **over}
    return config(templates=ts)


def with_peer(i: int, **over) -> str:
    ps = [ALICE, BOB]
    ps[i] = {**ps[i], **over}
    return config(peers=ps)


def with_device(**over) -> str:
    return config(device={**DEVICE, **over})


SA0, SA1, SA2 = "sa[0] ('alice-in')", "sa[1] ('alice-out')", "sa[2] ('bob-ah-in')"
SPD0, SPD1 = "spd[0]", "spd[1]"
DEV = "[device]"

# id: (file text, entry the message must name, field it must name)
CASES = {
    # unknown tables and fields
    "unknown_table": (config(extra="\n[devices]\nreplay_window = 64\n"), "devices", None),
    "unknown_device_field": (with_device(replay_windw=64), DEV, "replay_windw"),
    "unknown_peer_field": (with_peer(1, claim=["203.0.113.0/24"]),
                           "peer[1] ('bob@example.org')", "claim"),
    "unknown_sa_field": (with_sa(1, spii=5), SA1, "spii"),
    "unknown_spd_field": (with_spd(0, ports="80"), SPD0, "ports"),
    "unknown_template_field": (with_template(1, remote_prot=443), "template[1]", "remote_prot"),
    # missing required fields
    "missing_sa_key": (with_sa(0, key=DEL), SA0, "key"),
    "missing_sa_spi": (with_sa(1, spi=DEL), SA1, "spi"),
    "missing_sa_peer": (with_sa(2, peer=DEL), SA2, "peer"),
    "missing_sa_name": (with_sa(1, name=DEL), "sa[1]", "name"),
    "missing_sa_dir": (with_sa(2, dir=DEL), SA2, "dir"),
    "missing_spd_action": (with_spd(1, action=DEL), SPD1, "action"),
    "missing_spd_dir": (with_spd(0, dir=DEL), SPD0, "dir"),
    "missing_peer_name": (with_peer(1, name=DEL), "peer[1]", "name"),
    "missing_template_kind": (with_template(0, kind=DEL), "template[0]", "kind"),
    # wrong types
    "spi_is_string": (with_sa(0, spi="0x1001"), SA0, "spi"),
    "icv_is_float": (with_sa(1, icv=16.0), SA1, "icv"),
    "icv_is_bool": (with_sa(1, icv=True), SA1, "icv"),
    "esn_is_int": (with_sa(0, esn=1), SA0, "esn"),
    "name_is_int": (with_sa(1, name=7), "sa[1]", "name"),
    "claims_is_string": (with_peer(0, claims="203.0.113.0/24"), "peer[0] ('alice@example.org')",
                         "claims"),
    "claims_item_is_int": (with_peer(0, claims=Toml('["203.0.113.0/24", 5]')),
                           "peer[0] ('alice@example.org')", "claims"),
    "replay_window_is_string": (with_device(replay_window="128"), DEV, "replay_window"),
    "time_wait_is_string": (with_device(time_wait_s="60"), DEV, "time_wait_s"),
    "udp_idle_is_bool": (with_device(udp_idle_s=True), DEV, "udp_idle_s"),
    "spd_local_is_int": (with_spd(0, local=5), SPD0, "local"),
    "template_local_port_is_float": (with_template(0, local_port=22.0), "template[0]", "local_port"),
    # bad addresses, prefixes, ranges
    "prefix_too_long": (with_spd(0, local="192.0.2.1/33"), SPD0, "local"),
    "prefix_host_bits": (with_spd(1, remote="203.0.113.5/24"), SPD1, "remote"),
    "range_reversed": (with_spd(0, remote="203.0.113.9-203.0.113.1"), SPD0, "remote"),
    "range_mixed_versions": (with_spd(0, remote="203.0.113.1-2001:db8::1"), SPD0, "remote"),
    "address_garbage": (with_spd(1, local="localhost"), SPD1, "local"),
    "local_remote_versions_differ": (with_spd(0, remote="2001:db8::/32"), SPD0, "remote"),
    "claim_bad_octet": (with_peer(1, claims=["203.0.113.0/24", "300.1.1.0/24"]),
                        "peer[1] ('bob@example.org')", "claims"),
    "claim_any": (with_peer(0, claims=["any"]), "peer[0] ('alice@example.org')", "claims"),
    "sa_src_not_address": (with_sa(0, src="203.0.113.500"), SA0, "src"),
    "sa_dst_prefix": (with_sa(1, dst="203.0.113.0/24"), SA1, "dst"),
    "sa_src_dst_versions": (with_sa(1, dst="2001:db8::5"), SA1, "dst"),
    "sa_in_src_without_dst": (with_sa(0, dst="any"), SA0, "dst"),
    "template_local_bad": (with_template(1, local="192.0.2.1/40"), "template[1]", "local"),
    # bad ports
    "port_too_big": (with_spd(0, remote_port=70000), SPD0, "remote_port"),
    "port_range_reversed": (with_spd(0, remote_port="443-80"), SPD0, "remote_port"),
    "port_range_open": (with_spd(0, remote_port="80-"), SPD0, "remote_port"),
    "port_negative": (with_spd(0, local_port=-1), SPD0, "local_port"),
    "port_name": (with_spd(0, local_port="http"), SPD0, "local_port"),
    "port_bool": (with_spd(0, local_port=True), SPD0, "local_port"),
    "template_port_too_big": (with_template(0, local_port=65536), "template[0]", "local_port"),
    # bad protocols
    "proto_name": (with_spd(0, proto="tcpp"), SPD0, "proto"),
    "proto_number_too_big": (with_spd(0, proto=256), SPD0, "proto"),
    "proto_string_too_big": (with_spd(0, proto="300"), SPD0, "proto"),
    "proto_negative": (with_spd(1, proto=-1), SPD1, "proto"),
    "proto_bool": (with_spd(1, proto=True), SPD1, "proto"),
    "template_proto_icmp": (with_template(0, proto="icmp"), "template[0]", "proto"),
    # algorithms, keys, ICVs
    "key_without_salt": (with_sa(0, key="000102030405060708090a0b0c0d0e0f"), SA0, "key"),
    "key_128_for_256": (with_sa(1, alg="aes-gcm-256"), SA1, "key"),
    "key_256_for_128": (with_sa(2, alg="gmac-128"), SA2, "key"),
    "key_not_hex": (with_sa(0, key="zz0102030405060708090a0b0c0d0e0fcafebabe"), SA0, "key"),
    "key_odd_digits": (with_sa(0, key="000102030405060708090a0b0c0d0e0fcafebab"), SA0, "key"),
    "icv_4_gcm": (with_sa(0, icv=4), SA0, "icv"),
    "icv_32_gcm": (with_sa(1, icv=32), SA1, "icv"),
    "icv_12_gmac": (with_sa(2, icv=12), SA2, "icv"),
    "icv_8_esp_null_gmac": (with_sa(0, alg="gmac-128", icv=8), SA0, "icv"),
    "ah_with_aes_gcm": (with_sa(2, alg="aes-gcm-256"), SA2, "alg"),
    "unknown_alg": (with_sa(1, alg="aes-cbc-128"), SA1, "alg"),
    # SPI range
    "spi_reserved": (with_sa(0, spi=255), SA0, "spi"),
    "spi_zero": (with_sa(1, spi=0), SA1, "spi"),
    "spi_too_big": (with_sa(2, spi=Toml("0x100000000")), SA2, "spi"),
    "spi_negative": (with_sa(2, spi=-4097), SA2, "spi"),
    # duplicates
    "duplicate_peer": (with_peer(1, name="alice@example.org"), "peer[1] ('alice@example.org')", "name"),
    "duplicate_sa_name": (with_sa(2, name="alice-in"), "sa[2] ('alice-in')", "name"),
    "duplicate_inbound_spi": (config(sas=[SA_IN, SA_OUT, {**SA_IN, "name": "alice-in-2"}]),
                              "sa[2] ('alice-in-2')", "spi"),
    "duplicate_inbound_spi_dst_only": (config(sas=[{**SA_IN, "src": "any"}, SA_OUT,
                                                   {**SA_IN, "name": "again", "src": "any"}]),
                                       "sa[2] ('again')", "spi"),
    # dangling references
    "sa_unknown_peer": (with_sa(1, peer="carol@example.org"), SA1, "peer"),
    "spd_unknown_sa": (with_spd(0, sa="alice-out2"), SPD0, "sa"),
    "spd_out_names_inbound_sa": (with_spd(0, sa="alice-in"), SPD0, "sa"),
    "spd_in_unknown_peer": (with_spd(1, peer="carol@example.org"), SPD1, "peer"),
    "spd_in_unknown_sa": (with_spd(1, sa="nobody-in"), SPD1, "sa"),
    "template_unknown_peer": (with_template(1, peer="carol@example.org"), "template[1]", "peer"),
    # device knobs
    "replay_window_63": (with_device(replay_window=63), DEV, "replay_window"),
    "replay_window_4097": (with_device(replay_window=4097), DEV, "replay_window"),
    "replay_window_0": (with_device(replay_window=0), DEV, "replay_window"),
    "sa_replay_window_32": (with_sa(0, replay_window=32), SA0, "replay_window"),
    "sa_replay_window_8192": (with_sa(2, replay_window=8192), SA2, "replay_window"),
    "latch_capacity_not_power_of_two": (with_device(latch_capacity=1000), DEV, "latch_capacity"),
    "latch_capacity_12_ways_4": (with_device(latch_capacity=12, latch_ways=4), DEV, "latch_capacity"),
    "latch_capacity_below_ways": (with_device(latch_capacity=2, latch_ways=4), DEV, "latch_capacity"),
    "latch_capacity_zero": (with_device(latch_capacity=0, latch_ways=1), DEV, "latch_capacity"),
    "latch_ways_3": (with_device(latch_capacity=12, latch_ways=3), DEV, "latch_ways"),
    "latch_ways_0": (with_device(latch_ways=0), DEV, "latch_ways"),
    # split geometry: the IPv6 table and the rest (the IPv4 table) are each ways x 2^k
    "latch_capacity_v6_96": (with_device(latch_capacity=1120, latch_capacity_v6=96), DEV,
                             "latch_capacity_v6"),
    "latch_capacity_v6_negative": (with_device(latch_capacity=1024, latch_capacity_v6=-4), DEV,
                                   "latch_capacity_v6"),
    "latch_capacity_v6_below_ways": (with_device(latch_capacity=1026, latch_capacity_v6=2), DEV,
                                     "latch_capacity_v6"),
    "latch_capacity_v6_text": (with_device(latch_capacity_v6="256"), DEV, "latch_capacity_v6"),
    "latch_capacity_v4_part_768": (with_device(latch_capacity=1024, latch_capacity_v6=256), DEV,
                                   "latch_capacity"),
    "latch_capacity_v4_part_zero": (with_device(latch_capacity=256, latch_capacity_v6=256), DEV,
                                    "latch_capacity"),
    "latch_capacity_v4_part_negative": (with_device(latch_capacity=256, latch_capacity_v6=512), DEV,
                                        "latch_capacity"),
    "time_wait_negative": (with_device(time_wait_s=-1), DEV, "time_wait_s"),
    "time_wait_nan": (with_device(time_wait_s=Toml("nan")), DEV, "time_wait_s"),
    "udp_idle_inf": (with_device(udp_idle_s=Toml("inf")), DEV, "udp_idle_s"),
    # tunnel SAs
    "tunnel_out_without_src": (with_sa(1, mode="tunnel", src=DEL), SA1, "src"),
    "tunnel_out_without_dst": (with_sa(1, mode="tunnel", dst="any"), SA1, "dst"),
    # other per-entry rules
    "dir_both": (with_sa(0, dir="both"), SA0, "dir"),
    "mode_typo": (with_sa(0, mode="tunel"), SA0, "mode"),
    "proto_esp_typo": (with_sa(2, proto="ahh"), SA2, "proto"),
    "seq_too_big": (with_sa(1, seq=2 ** 32), SA1, "seq"),
    "spd_action_unknown": (with_spd(0, action="allow"), SPD0, "action"),
    "spd_out_protect_without_sa": (with_spd(0, sa=DEL), SPD0, "sa"),
    "spd_bypass_names_sa": (with_spd(0, action="bypass"), SPD0, "sa"),
    "spd_out_names_peer": (with_spd(0, peer="alice@example.org"), SPD0, "peer"),
    "listener_with_remote": (with_template(0, remote="203.0.113.5"), "template[0]", "remote"),
    "listener_with_remote_port": (with_template(0, remote_port=443), "template[0]", "remote_port"),
}


def assert_names(msg: str, source: str, entry: str, field: str | None):
    assert msg.startswith(source + ":") or source in msg, f"file not named: {msg}"
    assert entry in msg, f"entry {entry!r} not named: {msg}"
    if field is not None:
        assert f"'{field}'" in msg, f"field {field!r} not named: {msg}"


def test_base_config_is_valid():
    cfg = parse_config(config(), "base.toml")
    assert [s.name for s in cfg.sas] == ["alice-in", "alice-out", "bob-ah-in"]
    assert len(cfg.spd) == 2 and len(cfg.templates) == 2 and len(cfg.peers) == 2
    ModelDevice.from_config(cfg)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_names_file_entry_field(tmp_path, case):
    text, entry, field = CASES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert_names(str(e.value), str(path), entry, field)
    # the same file through parse_config names the source it is given
    with pytest.raises(ConfigError) as e2:
        parse_config(text, "elsewhere/name.toml")
    assert_names(str(e2.value), "elsewhere/name.toml", entry, field)


@pytest.mark.parametrize("text,line", [
    ("[device\nreplay_window = 128\n", 1),
    (config() + "\n[[sa]]\nname = \"x\"\nspi = 0x\n", None),
    (config() + "\nkey = \"a\"\nkey = \"b\"\n", None),
])
def test_bad_toml(tmp_path, text, line):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "TOML" in msg
    if line is not None:
        assert re.search(rf"line {line}\b", msg), msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


@pytest.mark.parametrize("text,what", [
    ("[[device]]\nreplay_window = 64\n", "device"),
    ("[peer]\nname = \"a\"\n", "peer"),
    ("sa = 5\n", "sa"),
])
def test_wrong_table_shapes(text, what):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "shape.toml")
    assert "shape.toml" in str(e.value) and what in str(e.value)


def test_non_finite_timers_are_not_programmed():
    """nan/inf timers would crash the datapath when a latch sets its deadline."""
    for knob in ("time_wait_s", "udp_idle_s"):
        for value in ("nan", "inf", "-inf"):
            with pytest.raises(ConfigError, match=knob):
                parse_config(with_device(**{knob: Toml(value)}), "t.toml")


def test_errors_name_the_first_bad_entry_not_a_neighbour():
    """With two bad entries the message is about the first; with the first
    fixed, about the second: the index is really the entry's."""
    sas = [{**SA_IN, "icv": 5}, SA_OUT, {**SA_AH, "icv": 5}]
    with pytest.raises(ConfigError, match=re.escape(SA0)):
        parse_config(config(sas=sas), "two.toml")
    sas[0] = SA_IN
    with pytest.raises(ConfigError, match=re.escape(SA2)):
        parse_config(config(sas=sas), "two.toml")


@pytest.mark.parametrize("sas", [
    # (SPI, dst, src) vs (SPI, dst) vs SPI alone are distinct RFC 4301 lookups
    [SA_IN, {**SA_IN, "name": "alice-in-dst", "src": "any"},
     {**SA_IN, "name": "alice-in-any", "src": "any", "dst": "any"}],
    # same SPI from another source
    [SA_IN, {**SA_IN, "name": "alice-in-2", "src": "203.0.113.6"}],
    # ESP and AH SPIs are separate spaces; the same SPI outbound is another SA
    [SA_IN, {**SA_AH, "spi": SA_IN["spi"], "src": "203.0.113.5"},
     {**SA_OUT, "spi": SA_IN["spi"]}],
    # the replay window and capacities at their limits
    [{**SA_IN, "replay_window": 64}, {**SA_OUT, "seq": 2 ** 32 - 1},
     {**SA_AH, "replay_window": 4096, "esn": True, "seq": 2 ** 64 - 1}],
])
def test_near_misses_load(sas):
    spd = [{**SPD_OUT, "sa": next(s["name"] for s in sas if s["dir"] == "out")}] \
        if any(s["dir"] == "out" for s in sas) else []
    cfg = parse_config(config(sas=sas, spd=spd, device={**DEVICE, "latch_capacity": 4,
                                                         "latch_ways": 4}), "ok.toml")
    ModelDevice.from_config(cfg)


@pytest.mark.parametrize("cap, ways, cap6, sets4, sets6", [
    (1024, 4, 0, 256, 0),           # one table (the default geometry)
    (18432, 4, 2048, 4096, 512),    # the 85F build: 16384 IPv4 + 2048 IPv6 latches
    (17, 1, 1, 16, 1),              # direct-mapped, one IPv6 slot
    (24, 8, 8, 2, 1),               # the IPv6 table one set
])
def test_latch_geometry_loads(cap, ways, cap6, sets4, sets6):
    dev = {**DEVICE, "latch_capacity": cap, "latch_ways": ways}
    if cap6:
        dev["latch_capacity_v6"] = cap6
    cfg = parse_config(config(device=dev), "geo.toml")
    assert (cfg.device.latch_capacity, cfg.device.latch_ways, cfg.device.latch_capacity_v6) == (
        cap, ways, cap6)
    table = ModelDevice.from_config(cfg).latches
    assert (table.sets, table.sets_v6, len(table.slots)) == (sets4, sets6, cap)


# ----------------------------------------------------------------- the CLI

CLI_CASES = ["spd_unknown_sa", "key_128_for_256", "replay_window_63", "tunnel_out_without_src",
             "duplicate_inbound_spi", "unknown_table"]


def _bad_file(tmp_path, case) -> tuple[Path, str, str, str | None]:
    text, entry, field = CASES[case]
    path = tmp_path / f"BAD-{case}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return path, str(e.value), entry, field


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_check_bad_file(tmp_path, capsys, case):
    path, msg, entry, field = _bad_file(tmp_path, case)
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert msg in err
    assert_names(err, str(path), entry, field)
    assert "ok" not in out


def _pcap(path: Path):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    wrpcap(str(path), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                       / IP(src="192.0.2.1", dst="203.0.113.5") / TCP(sport=40000, dport=443)])


def _run_args(tmp_path, cfg_path, extra=()) -> tuple[list[str], list[Path]]:
    host_in, wire_in = tmp_path / "host-in.pcap", tmp_path / "wire-in.pcap"
    _pcap(host_in)
    _pcap(wire_in)
    outs = [tmp_path / n for n in ("host-out.pcap", "wire-out.pcap", "drops.jsonl", "events.jsonl",
                                   "counters.json")]
    args = ["run", "--config", str(cfg_path), "--engine", "model", "--host-in", str(host_in),
            "--wire-in", str(wire_in), "--host-out", str(outs[0]), "--wire-out", str(outs[1]),
            "--drops", str(outs[2]), "--events", str(outs[3]), "--counters", str(outs[4]), *extra]
    return args, outs


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_run_bad_config_writes_nothing(tmp_path, capsys, case):
    path, msg, entry, field = _bad_file(tmp_path, case)
    args, outs = _run_args(tmp_path, path)
    assert main(args) == 2
    _out, err = capsys.readouterr()
    assert msg in err
    assert_names(err, str(path), entry, field)
    assert [p for p in outs if p.exists()] == []


def test_cli_run_bad_apply_file_writes_nothing(tmp_path, capsys):
    """A bad --apply file is found before any frame is processed."""
    path, msg, entry, field = _bad_file(tmp_path, "sa_unknown_peer")
    args, outs = _run_args(tmp_path, EXAMPLE, ["--apply", f"+1={path}"])
    assert main(args) == 2
    assert msg in capsys.readouterr().err
    assert [p for p in outs if p.exists()] == []


def test_cli_run_good_config_writes_outputs(tmp_path, capsys):
    """Control for the test above: the same command with a good file works."""
    args, outs = _run_args(tmp_path, EXAMPLE)
    assert main(args) == 0
    assert all(p.exists() for p in outs[:3] + outs[4:])


def _latchnic(*args) -> subprocess.CompletedProcess:
    """The installed command, as a user runs it (a fresh process)."""
    code = "import sys; from latchnic.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60)


def test_latchnic_command_exit_codes(tmp_path):
    path, msg, entry, field = _bad_file(tmp_path, "icv_12_gmac")
    p = _latchnic("check", str(path))
    assert p.returncode == 2 and msg in p.stderr and p.stdout == ""
    args, outs = _run_args(tmp_path, path)
    p = _latchnic(*args)
    assert p.returncode == 2 and msg in p.stderr
    assert [o for o in outs if o.exists()] == []
    p = _latchnic("check", str(EXAMPLE))
    assert p.returncode == 0 and "ok" in p.stdout and p.stderr == ""


# --------------------------------------------------------- shipped examples

def test_example_gateway_loads():
    cfg = load_config(EXAMPLE)
    assert {p.name for p in cfg.peers} == {"alice@example.org", "bob@example.org"}
    assert {s.name for s in cfg.sas} == {"alice-in", "alice-out", "bob-in"}
    assert cfg.device.replay_window == 128
    dev = ModelDevice.from_config(cfg)
    assert dev.caps()["replay_window"] == 128
    assert main(["check", str(EXAMPLE)]) == 0


def _interfaces_example() -> str:
    if not INTERFACES_MD.exists():
        pytest.skip(f"{INTERFACES_MD} not present")
    blocks = re.findall(r"```toml\n(.*?)```", INTERFACES_MD.read_text(), re.S)
    assert len(blocks) == 1, "interfaces.md should hold one TOML example"
    return blocks[0]


def test_interfaces_example_has_dangling_sa():
    """The contract's example names SA 'alice-out' but only defines 'alice-in':
    exactly the dangling-reference error, in the SPD entry, field 'sa'."""
    with pytest.raises(ConfigError) as e:
        parse_config(_interfaces_example(), "interfaces.md")
    assert_names(str(e.value), "interfaces.md", "spd[0]", "sa")
    assert "alice-out" in str(e.value)


def test_interfaces_example_loads_with_alice_out():
    text = _interfaces_example() + "\n" + table("[[sa]]", SA_OUT)
    cfg = parse_config(text, "interfaces.md")
    assert cfg.device.replay_window == 128 and cfg.device.time_wait_s == 60
    assert [s.name for s in cfg.sas] == ["alice-in", "alice-out"]
    assert cfg.spd[0].sa == "alice-out" and str(cfg.spd[0].remote_port) == "80-443"
    assert [t.kind for t in cfg.templates] == ["listener", "initiator"]
    assert cfg.templates[1].peer == "alice@example.org"
    ModelDevice.from_config(cfg)
