"""The policy and latching core: parser, SPD, latch table."""
