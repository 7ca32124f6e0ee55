"""Model descriptors, quantization and parallelism, the per-kernel op graph, the roofline cost model and memory planner."""

from roofsim.model.spec import MLASpec, ModelSpec, MoESpec, ParallelSpec, QuantSpec

__all__ = ["MLASpec", "MoESpec", "ModelSpec", "ParallelSpec", "QuantSpec"]

from roofsim.model.loader import list_models, load_model, model_from_file, model_from_hf_config, model_ids  # noqa: E402

__all__ += ["list_models", "load_model", "model_from_file", "model_from_hf_config", "model_ids"]
