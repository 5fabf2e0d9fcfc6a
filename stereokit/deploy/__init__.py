"""Deployment: the QDQ ONNX IR, target profiles and the checker, the compiler and its container,
the runtime wrapper and the performance estimator."""
