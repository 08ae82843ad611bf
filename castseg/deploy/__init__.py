"""Shipping a trained model: image inputs, batched prediction with PyTorch or ONNX Runtime,
ONNX export with its metadata, and latency / parameter measurements."""
