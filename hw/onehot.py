"""One-hot state encoding for an Amaranth FSM, in synthesis only.

Amaranth encodes an FSM's state in binary and gives the register an init
value, which keeps yosys's `fsm` pass from recoding it. An explicit
`fsm_encoding` attribute makes `fsm_recode` give every state its own
flip-flop: a state decode is then one flip-flop instead of a compare of the
state bits, in front of every enable and of the next state (timing,
docs/policy-core.md "fifth round"). Simulation keeps the binary encoding.

yosys ignores the state's init value when it recodes, so a build must assert
the domain's reset after configuration (a power-on reset)."""


def one_hot(fsm):
    """Mark `fsm` (the object `with m.FSM() as fsm` gives, after its block)
    for one-hot recoding."""
    fsm.state.attrs["fsm_encoding"] = "one-hot"
