"""ONNX Runtime inference, bundles and explanations; imports nothing from training or torch."""
