"""Header parser under cocotb/Verilator vs the reference model's parser.

Default run: 1500 random valid and mutated frames without stalls and 1500
with random idle/backpressure, on one cached build. `-m slow`: 20000 more.
"""

import pytest

from policy_harness import run
from policy_tops import parser_top


def _run(run_name, **env):
    run(parser_top, name="policy_parser", test_module="cocotb_parser_tb", env=env,
        run_name=run_name)


def test_parser_random_frames():
    _run("plain", PARSER_SEED=1, PARSER_COUNT=1500, PARSER_STALL=0)


def test_parser_random_frames_stalls():
    _run("stall", PARSER_SEED=2, PARSER_COUNT=1500, PARSER_STALL=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [10, 11])
def test_parser_long(seed):
    _run(f"long{seed}", PARSER_SEED=seed, PARSER_COUNT=10000, PARSER_STALL=seed % 2,
         PARSER_MUTATED=0.6)
