"""PyTorch -> ONNX export, parity checks, FP16 variants, bundle writing."""
