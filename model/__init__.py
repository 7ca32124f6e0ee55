"""Model descriptors, quantization and parallelism, the per-kernel op graph, the roofline cost model and memory planner."""

from model.spec import MLASpec, ModelSpec, MoESpec, ParallelSpec, QuantSpec

__all__ = ["MLASpec", "MoESpec", "ModelSpec", "ParallelSpec", "QuantSpec"]
