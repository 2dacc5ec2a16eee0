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
