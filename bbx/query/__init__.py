"""Masks to scores: the probes of a step built on the host or, beside an ONNX model, on the device."""
