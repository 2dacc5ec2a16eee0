"""AES-GCM / GMAC crypto engine gateware (see docs/crypto-engine.md)."""
