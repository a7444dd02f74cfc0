"""PyTorch side of larsr: data, degradation, metrics, networks, training and ONNX export."""
