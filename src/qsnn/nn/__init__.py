"""What is trained: LIF neurons and their fused recurrence, the spiking net, its builders (models/),
weight quantizers (quant/), surrogate gradients (surrogate/) and the sigma-delta neuron. Imports
nothing of qsnn but ``qsnn.errors``."""
