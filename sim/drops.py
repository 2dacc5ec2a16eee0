"""The fixed vocabulary of drop reasons. Every dropped frame carries exactly
one; the gateware reports the same codes (index = code number), so the list
is append-only."""

REASONS = {
    "malformed": "headers inconsistent or truncated, bad IPv4 checksum, garbage",
    "fragment": "an ESP/AH packet that is an IP fragment (no reassembly in the NIC), "
                "or a fragment an outbound transport-mode SA would have to protect",
    "unsupported": "valid but outside what the datapath implements (IPv6 routing header under AH, jumbogram, "
                   "a packet too big to protect within 65535 bytes)",
    "no_policy": "no SPD rule matched (the SPD's implicit final rule is DISCARD)",
    "spd_discard": "the first matching SPD rule says DISCARD",
    "spd_clear": "a clear-text inbound packet whose first matching SPD rule is PROTECT",
    "spd_mismatch": "an inbound protected packet whose first matching SPD rule does not accept "
                    "it (BYPASS, or PROTECT pinned to another SA or peer)",
    "pad_claim": "the peer of the protecting SA may not claim the packet's remote address (PAD)",
    "no_sa": "no SAD entry: unknown inbound SPI, or an outbound rule whose SA is gone",
    "replay": "sequence number outside or already seen in the anti-replay window",
    "icv": "integrity check failed",
    "bad_padding": "ESP trailer inconsistent (pad length, pad bytes)",
    "seq_exhausted": "the outbound SA used its last sequence number; it sends no more",
    "latch_peer": "latched flow, but the SA belongs to another peer (or a template's expected peer differs)",
    "latch_qop": "latched flow, SA of the same peer but weaker protection than latched",
    "latch_clear": "latched flow, packet in clear text (inbound) or policy says BYPASS (outbound)",
    "latch_broken": "latched flow in BROKEN state: no compatible SA, all its traffic is dropped",
    "latch_table_full": "a template matched but the flow's latch set is full; fails closed",
}

REASON_CODES = {name: i for i, name in enumerate(REASONS)}


class Drop(Exception):
    """Raised inside the datapath; becomes a counted drop."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
