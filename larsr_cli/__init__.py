"""larsr: x4 photo super-resolution with LAR-SR, running on onnxruntime alone."""

__version__ = "0.1.0"
