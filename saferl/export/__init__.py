"""Policy export for robots without JAX (ONNX)."""

from saferl.export.onnx import export_policy_onnx

__all__ = ["export_policy_onnx"]
