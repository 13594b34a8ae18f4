"""edgec: a hardware-aware edge deployment compiler."""

__version__ = "0.1.0"
