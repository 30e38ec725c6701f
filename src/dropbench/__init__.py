"""dropbench: drop layers of pre-trained transformer encoders and measure what survives on GLUE."""

__version__ = "0.1.0"
