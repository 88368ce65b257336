"""Training: config, the loop, checkpoints and ONNX export; no web or database code."""
