"""latchnic: IPsec offload NIC block with connection latching."""

__version__ = "0.1.0"
