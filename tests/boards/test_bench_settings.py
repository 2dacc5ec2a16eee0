"""The policy bench's nextpnr settings per target: the pinned seed and
arguments when the command line gives neither, only what it gives otherwise
(a figure in docs/policy-core.md names the settings it was routed with)."""

from latchnic.bench.policy import PINNED, TARGETS, main, nextpnr_settings, run_folder


def test_pinned_pair_when_nothing_given():
    assert nextpnr_settings("25f", None, None) == ([2], ["--tmg-ripup"])
    assert nextpnr_settings("85f", None, None) == ([1], ["--placer", "static"])
    assert set(PINNED) == set(TARGETS)


def test_either_option_replaces_both():
    assert nextpnr_settings("25f", [1], None) == ([1], [])
    assert nextpnr_settings("25f", [3, 4], None) == ([3, 4], [])
    assert nextpnr_settings("25f", None, ["--tmg-ripup"]) == ([1], ["--tmg-ripup"])
    assert nextpnr_settings("85f", [2], ["--router", "router2"]) == ([2], ["--router", "router2"])


def test_pinned_list_is_not_shared():
    seeds, extra = nextpnr_settings("25f", None, None)
    extra.append("--x")
    assert PINNED["25f"][1] == ["--tmg-ripup"]


def test_settings_name_the_build_folder():
    # the pinned 25F run and a plain seed-2 run keep separate paths reports
    assert run_folder("25f", 2, ["--tmg-ripup"]) != run_folder("25f", 2, [])
    assert run_folder("25f", 1, []) == "synth_policy_25f"


def test_command_line_parses_without_synthesis(capsys):
    assert main(["--no-sim", "--no-synth", "--seed", "1", "2", "--nextpnr-arg=--tmg-ripup"]) == 0


def test_rows_override_builds_its_own_netlist_in_its_own_folder():
    from latchnic.bench.policy import target_core
    assert target_core("85f").params.sad_rows == TARGETS["85f"][-1] == 4
    one_row = target_core("85f", 1).params
    assert (one_row.sad_rows, one_row.pad_rows) == (1, 1)
    # another netlist must not reuse the target's placement or paths report
    assert run_folder("85f", 1, [], 1) != run_folder("85f", 1, [])
    assert run_folder("85f", 1, [], TARGETS["85f"][-1]) == run_folder("85f", 1, [])
    assert run_folder("85f", 2, [], 1) != run_folder("85f", 1, [], 1)
    assert main(["--no-sim", "--no-synth", "--rows", "1"]) == 0


def test_spd_rows_build_in_their_own_folder():
    from latchnic.bench.policy import SPD_ROWS, target_core
    # the 85F has the EBRs for 1 row per rule (line rate at rule 63), the 25F not
    assert target_core("85f").params.spd_rows == SPD_ROWS["85f"] == 1
    assert target_core("25f").params.spd_rows == SPD_ROWS["25f"] == 2
    assert target_core("85f", spd_rows=2).params.spd_rows == 2
    assert run_folder("85f", 1, [], 4, 2) != run_folder("85f", 1, [], 4)
    assert run_folder("85f", 1, [], 4, 1) == run_folder("85f", 1, [])
    assert run_folder("25f", 1, [], 4, 1) != run_folder("25f", 1, [])
    assert set(SPD_ROWS) == set(TARGETS)


def test_deep_spd_config_puts_the_protected_flow_at_the_last_rule():
    # the whole-core worst case: the outbound ACK to alice must first match
    # rule 63 of 64, under alice-out, not one of the bypass rules ahead
    import ipaddress
    from pathlib import Path

    from latchnic.bench.policy import deep_spd_config
    from latchnic.config import parse_config
    from latchnic.sim.selectors import Flow
    from latchnic.sim.spd import Spd
    text = (Path(__file__).resolve().parents[2] / "examples" / "gateway.toml").read_text()
    cfg = parse_config(deep_spd_config(text, 63))
    spd = Spd(cfg.spd)
    assert len(spd.rules["out"]) == 64
    ip = lambda s: int(ipaddress.ip_address(s))
    rule = spd.lookup("out", Flow(4, ip("192.0.2.1"), ip("203.0.113.5"), 6, 50000, 80))
    assert spd.rules["out"].index(rule) == 63
    assert (rule.action, rule.sa) == ("protect", "alice-out")
    # and the filler rules do match their own hosts (they are rules, not dead text)
    assert spd.lookup("out", Flow(4, ip("192.0.2.1"), ip("198.51.100.7"), 6, 1, 2)).action == "bypass"


def test_rate_at_fmax_shows_the_deep_spd_case_of_the_build_only(capsys):
    from latchnic.bench.policy import report_rate
    cycles = {"ack [fwd]": 33.0, "ack, SPD rule 63 of 64 (2 RAM rows/rule) [fwd]": 151.0,
              "ack, SPD rule 63 of 64 (1 RAM row/rule) [fwd]": 87.0}
    report_rate(cycles, {"fmax_mhz": 160.0, "routed": True, "spd_rows": 1})
    out = capsys.readouterr().out
    assert "ack [fwd] 4.85" in out and "(1 RAM row/rule) [fwd] 1.84" in out
    assert "2 RAM rows" not in out
    report_rate(cycles, {"fmax_mhz": 125.0, "routed": True, "spd_rows": 2})
    out = capsys.readouterr().out
    assert "(2 RAM rows/rule) [fwd] 0.83" in out and "1 RAM row/" not in out
