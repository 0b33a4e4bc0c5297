"""Surrogate-gradient family (Herranz-Celotti & Rouat): seven shapes parameterised by
dampening ``gamma`` (peak), sharpness ``beta`` (inverse width) and, for q-PseudoSpike,
tail fatness ``q``; plus the stability-based choice of gamma/beta at model build."""
from qsnn.nn.surrogate.family import SHAPES, Surrogate, snntorch_sigmoid, surrogate

__all__ = ["SHAPES", "Surrogate", "snntorch_sigmoid", "surrogate"]
