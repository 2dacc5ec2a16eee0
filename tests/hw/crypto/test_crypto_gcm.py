"""GCM engine on Verilator via cocotb: NIST CAVP vectors and a differential
test against `cryptography`'s AESGCM.

Default run: a CAVP subset (every Nth vector of each file, failing tags
included) and a differential run with random stalls, on the compact
configuration. `pytest -m slow tests/hw/crypto` runs every 96-bit-IV vector
of the four CAVP files and longer differential runs, on both configurations.
Builds are cached in build/ (LATCHNIC_BUILD overrides).
"""

from pathlib import Path

import pytest

from latchnic.sim.cocotb_harness import run_cocotb

from crypto_vectors import CAVP_FILES

HERE = Path(__file__).parent


def _design(config):
    def make():
        from latchnic.hw.crypto.gcm_axis import GCMAxisTop
        return GCMAxisTop(config)
    return make


def _run(config, run_name, **env):
    env = {k: str(v) for k, v in env.items()}
    env["LATCHNIC_GCM_CONFIG"] = config
    run_cocotb(_design(config), name=f"gcm_{config}", test_module="cocotb_gcm_tb",
               module_dir=HERE, key=config, extra_env=env, run_name=run_name)


@pytest.mark.parametrize("config", ["compact"])
def test_cavp_subset(config):
    _run(config, "cavp_subset", LATCHNIC_GCM_JOB="cavp",
         LATCHNIC_CAVP_FILES=",".join(CAVP_FILES), LATCHNIC_CAVP_STRIDE=23)


@pytest.mark.parametrize("config", ["compact"])
def test_differential_stalls(config):
    _run(config, "diff_stall", LATCHNIC_GCM_JOB="diff", LATCHNIC_DIFF_SEED=1,
         LATCHNIC_DIFF_COUNT=40, LATCHNIC_DIFF_MAXLEN=9000, LATCHNIC_STALL=1)


@pytest.mark.parametrize("config", ["compact"])
def test_length_mismatch(config):
    _run(config, "len_err", LATCHNIC_GCM_JOB="lenerr", LATCHNIC_DIFF_SEED=3,
         LATCHNIC_DIFF_COUNT=40, LATCHNIC_DIFF_MAXLEN=600, LATCHNIC_STALL=1)


@pytest.mark.parametrize("config", ["compact"])
def test_rekey_in_flight(config):
    # keys rewritten while packets on the slot are still inside: the engine
    # must hold the write back until they are done
    _run(config, "rekey", LATCHNIC_GCM_JOB="diff", LATCHNIC_DIFF_SEED=9,
         LATCHNIC_DIFF_COUNT=60, LATCHNIC_DIFF_MAXLEN=300, LATCHNIC_STALL=1,
         LATCHNIC_EAGER_REKEY=1)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["compact", "wide"])
@pytest.mark.parametrize("stall", [0, 1])
def test_small_packets(config, stall):
    # many short packets back to back (wide: several overlap between the
    # sequencer, the GHASH drain and the tag stage), all modes, keys in
    # random slots with re-keying, with and without stalls
    _run(config, f"small_{stall}", LATCHNIC_GCM_JOB="diff", LATCHNIC_DIFF_SEED=200 + stall,
         LATCHNIC_DIFF_COUNT=400, LATCHNIC_DIFF_MAXLEN=80, LATCHNIC_DIFF_SMALL=1,
         LATCHNIC_STALL=stall)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["compact", "wide"])
def test_length_mismatch_long(config):
    _run(config, "len_err_long", LATCHNIC_GCM_JOB="lenerr", LATCHNIC_DIFF_SEED=4,
         LATCHNIC_DIFF_COUNT=200, LATCHNIC_DIFF_MAXLEN=3000, LATCHNIC_STALL=1)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["compact", "wide"])
@pytest.mark.parametrize("fname", CAVP_FILES)
def test_cavp_full(config, fname):
    _run(config, f"cavp_{fname}", LATCHNIC_GCM_JOB="cavp",
         LATCHNIC_CAVP_FILES=fname, LATCHNIC_CAVP_STRIDE=1)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["compact", "wide"])
@pytest.mark.parametrize("stall", [0, 1])
def test_differential_long(config, stall):
    _run(config, f"diff_long_{stall}", LATCHNIC_GCM_JOB="diff", LATCHNIC_DIFF_SEED=100 + stall,
         LATCHNIC_DIFF_COUNT=200, LATCHNIC_DIFF_MAXLEN=9000, LATCHNIC_STALL=stall)
