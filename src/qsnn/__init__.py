"""qsnn: experiment management for quantized spiking neural networks."""

__version__ = "0.1.0"
