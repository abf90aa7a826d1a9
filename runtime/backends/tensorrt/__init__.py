"""The TensorRT backend: engine builds (hand-built network or ONNX parser), sidecars, version differences, the runner."""
