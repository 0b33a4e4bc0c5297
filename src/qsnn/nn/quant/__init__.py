"""Weight and state quantizers. Each quantizer is an ``nn.Module`` mapping a float weight
to its fake-quantized value; ``apply.quantize_weights`` registers it on the model's layers
as a ``torch.nn.utils.parametrize`` parametrization."""
