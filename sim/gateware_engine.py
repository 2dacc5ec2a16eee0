"""The `--engine gateware` slot of the pcap runner.

The policy/latching core (hw/, issue "Gateware policy and latching core") is
not integrated yet, so there is no gateware datapath to run frames through.
This engine refuses clearly instead of pretending; the runner and the CLI
report the message and exit non-zero.
"""


class EngineUnavailable(RuntimeError):
    pass


class GatewareDevice:
    @classmethod
    def from_config(cls, cfg):
        raise EngineUnavailable(
            "the gateware engine is not available yet: the offload block's policy and "
            "latching core has not been integrated (only the crypto engine exists under "
            "hw/crypto); use --engine model")
