"""Every failing path of a routed ECP5 design, grouped, from nextpnr's SDF.

nextpnr prints one critical path per clock. Closing timing on a design with
thousands of failing endpoints one path per place-and-route run (20 minutes
each for the whole core on the 25F) is too slow, so this reads the SDF
nextpnr writes after routing (`--sdf`: every routed arc's interconnect
delay, every cell's pin-to-pin delay and setup check) and computes the
worst arrival at every endpoint. Endpoints are grouped by the register
(or block RAM) they belong to, with the worst path into each group and the
register group it starts from.

Written by hand: no available package does static timing on an SDF. The
parser reads only what nextpnr writes (INTERCONNECT, IOPATH, SETUPHOLD with
the max of each triple); one clock, rising edges, no clock skew (nextpnr's
ECP5 globals report 0 skew). Figures agree with nextpnr's own critical path
to within the rounding of its report (tests/boards/test_ecp5_paths.py).

    python -m latchnic.boards.ecp5_paths routed.sdf --period 8 [--top 40]
"""

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_TRIPLE = r"\((-?\d*):(-?\d*):(-?\d*)\)"
_INTERCONNECT = re.compile(r"\(INTERCONNECT\s+(\S+)\s+(\S+)\s+" + _TRIPLE)
_CELL = re.compile(r"\(CELLTYPE\s+\"([^\"]*)\"\)\s*\(INSTANCE\s*([^)]*)\)")
_IOPATH = re.compile(r"\(IOPATH\s+(\S+)\s+(\S+)\s+" + _TRIPLE)
_CHECK = re.compile(r"\(SETUPHOLD\s+\((?:posedge|negedge)\s+(\S+)\)\s+\(posedge\s+(\S+)\)\s+"
                    + _TRIPLE + r"\s+" + _TRIPLE)
_CLOCK_PINS = {"CLK", "CLKA", "CLKB", "CLKW", "CLKR", "CLKI"}
# nextpnr names a packed cell after the net it drives: x_TRELLIS_FF_Q_3 is bit 3 of x
_FF_SUFFIX = re.compile(r"_TRELLIS_FF_Q(_\d+)?$")


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _ps(triple) -> int:
    """The max of an SDF (min:typ:max) triple, in ps (empty fields count 0)."""
    return max(int(x) if x not in ("", "-") else 0 for x in triple)


def group_of(instance: str) -> str:
    """The register a cell belongs to: the flip-flop's net without its bit index."""
    return _FF_SUFFIX.sub("", instance)


@dataclass
class Timing:
    """The timing graph of one routed design (delays in ps)."""
    edges: dict = field(default_factory=lambda: defaultdict(list))   # pin -> [(pin, ps, kind)]
    launch: dict = field(default_factory=dict)      # output pin -> clock-to-output ps
    setup: dict = field(default_factory=dict)       # endpoint pin -> setup ps
    celltype: dict = field(default_factory=dict)    # instance -> type


def parse_sdf(text: str) -> Timing:
    t = Timing()
    # the top cell holds the interconnect; each other CELL block its own arcs
    for src, dst, *tri in _INTERCONNECT.findall(text):
        t.edges[_unescape(src)].append((_unescape(dst), _ps(tri), "routing"))
    starts = [(m.start(), m.group(1), _unescape(m.group(2).strip())) for m in _CELL.finditer(text)]
    for i, (pos, ctype, inst) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        body = text[pos:end]
        t.celltype[inst] = ctype
        for a, b, *tri in _IOPATH.findall(body):
            if a in _CLOCK_PINS:
                t.launch[f"{inst}/{b}"] = _ps(tri)
            else:
                t.edges[f"{inst}/{a}"].append((f"{inst}/{b}", _ps(tri), "logic"))
        for pin, clk, *tri in _CHECK.findall(body):
            # (setup) (hold): the setup triple, as nextpnr's own report adds it
            t.setup[f"{inst}/{pin}"] = max(t.setup.get(f"{inst}/{pin}", 0), _ps(tri[:3]))
    return t


@dataclass
class TimedPath:
    endpoint: str
    arrival: int          # ps, data at the endpoint pin
    required: int         # ps, period - setup
    hops: list            # [(pin, ps into this pin, kind)], source first

    @property
    def slack(self) -> int:
        return self.required - self.arrival


def analyse(t: Timing, period_ps: int) -> list[TimedPath]:
    """The worst path into every endpoint with a setup check, worst slack first."""
    arrival: dict = {}
    came_from: dict = {}
    # forward, longest path over a DAG: relax edges in topological order
    indeg = defaultdict(int)
    for src, outs in t.edges.items():
        for dst, _, _ in outs:
            indeg[dst] += 1
    ready = []
    for pin, ps in t.launch.items():
        arrival[pin] = ps
        came_from[pin] = None
    # paths from the pads (and constant drivers) are not register to
    # register: they start far below zero and never reach an endpoint's report
    unclocked = -10 ** 9
    for src in t.edges:
        if indeg[src] == 0:
            arrival.setdefault(src, unclocked)
            came_from.setdefault(src, None)
            ready.append(src)
    while ready:
        src = ready.pop()
        a = arrival[src]
        for dst, ps, kind in t.edges[src]:
            if dst not in arrival or a + ps > arrival[dst]:
                arrival[dst] = a + ps
                came_from[dst] = (src, ps, kind)
            indeg[dst] -= 1
            if indeg[dst] == 0:
                ready.append(dst)
    paths = []
    for pin, su in t.setup.items():
        if arrival.get(pin, -1) < 0:
            continue
        hops = []
        p = pin
        while came_from.get(p):
            src, ps, kind = came_from[p]
            hops.append((p, ps, kind))
            p = src
        hops.append((p, arrival[p], "clk-to-q"))
        paths.append(TimedPath(pin, arrival[pin], period_ps - su, hops[::-1]))
    paths.sort(key=lambda q: q.slack)
    return paths


def by_group(paths: list[TimedPath]) -> list[dict]:
    """Failing endpoints per register group: count, worst slack, the worst
    path's source group. Worst group first."""
    groups: dict = {}
    for q in paths:
        if q.slack >= 0:
            break
        g = group_of(q.endpoint.rsplit("/", 1)[0])
        if g not in groups:
            groups[g] = {"group": g, "endpoints": 0, "worst_ps": q.slack, "path": q,
                         "from": group_of(q.hops[0][0].rsplit("/", 1)[0])}
        groups[g]["endpoints"] += 1
    return list(groups.values())


def render(path: TimedPath) -> str:
    lines = []
    for pin, ps, kind in path.hops:
        lines.append(f"  {kind:8s} {ps / 1000:5.2f}  {pin}")
    logic = sum(ps for _, ps, k in path.hops if k != "routing")
    lines.append(f"  arrival {path.arrival / 1000:.2f} ns (logic {logic / 1000:.2f}, routing "
                 f"{(path.arrival - logic) / 1000:.2f}), required {path.required / 1000:.2f}, "
                 f"slack {path.slack / 1000:.2f}")
    return "\n".join(lines)


def report(sdf: Path, period_ns: float, top: int = 30, paths_shown: int = 10) -> str:
    t = parse_sdf(Path(sdf).read_text())
    paths = analyse(t, round(period_ns * 1000))
    failing = [q for q in paths if q.slack < 0]
    groups = by_group(paths)
    out = [f"{len(paths)} endpoints, {len(failing)} failing at {period_ns} ns; "
           f"worst slack {paths[0].slack / 1000:.2f} ns (Fmax {1e6 / (round(period_ns * 1000) - paths[0].slack):.2f} MHz)"
           if paths else "no endpoints"]
    out.append(f"{len(groups)} failing register groups (worst first): endpoints, worst slack, from")
    for g in groups[:top]:
        out.append(f"  {g['endpoints']:5d} {g['worst_ps'] / 1000:6.2f}  {g['group']}  <-  {g['from']}")
    for g in groups[:paths_shown]:
        out.append(f"\n{g['group']} (worst of {g['endpoints']}):")
        out.append(render(g["path"]))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m latchnic.boards.ecp5_paths", description=__doc__.split("\n")[0])
    ap.add_argument("sdf", type=Path)
    ap.add_argument("--period", type=float, default=8.0, help="clock period, ns (default 8: 125 MHz)")
    ap.add_argument("--top", type=int, default=30, help="register groups listed")
    ap.add_argument("--paths", type=int, default=10, help="worst paths printed hop by hop")
    a = ap.parse_args(argv)
    if not a.sdf.exists():
        sys.exit(f"ecp5_paths: no such SDF file: {a.sdf}")
    print(report(a.sdf, a.period, a.top, a.paths))


if __name__ == "__main__":
    main()
