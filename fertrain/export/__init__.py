"""Exports: ONNX with a preprocessing sidecar and a PyTorch/onnxruntime parity check."""
