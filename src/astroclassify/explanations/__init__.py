"""What the model looked at: Grad-CAM maps computed inside the ONNX graph, and overlays."""
