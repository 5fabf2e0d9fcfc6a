"""Quantization in the reference flow's three steps: fuse, set the qconfig, prepare; then the
integer conversion (int_infer). Built on torch.ao.quantization's eager mode (see docs/quantization.md)."""
