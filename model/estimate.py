"""One prefill and one decode step of a deployment, with its memory plan: the numbers `roofsim estimate` prints and
`roofsim.estimate` returns (a static calculator, no queueing; the simulator adds that)."""

from __future__ import annotations

from dataclasses import dataclass

from roofsim.hardware_specs.spec import HardwareSpec
from roofsim.model.batch import BatchShape
from roofsim.model.cost import Calibration, CostModel, StepCost
from roofsim.model.memory import MemoryPlan, plan_memory
from roofsim.model.params import ParamCounts, count_params
from roofsim.model.spec import ModelSpec, ParallelSpec, QuantSpec


@dataclass(frozen=True, slots=True)
class Estimate:
    """TTFT, TPOT and memory of `batch` requests of `input_len` prompt and `output_len` generated tokens, all
    arriving together: TTFT is the prefill of the whole batch, TPOT one decode step at the mean context."""

    model: ModelSpec
    hardware: HardwareSpec
    quant: QuantSpec
    parallel: ParallelSpec
    calibration: Calibration
    batch: int
    input_len: int
    output_len: int
    prefill: StepCost
    decode: StepCost
    memory: MemoryPlan
    params: ParamCounts

    @property
    def ttft_s(self) -> float:
        return self.prefill.seconds

    @property
    def tpot_s(self) -> float:
        return self.decode.seconds

    @property
    def e2e_s(self) -> float:
        return self.prefill.seconds + (self.output_len - 1) * self.decode.seconds

    @property
    def output_tokens_per_s(self) -> float:
        return self.batch / self.decode.seconds

    @property
    def decode_context_tokens(self) -> int:
        """Context of the costed decode step: the prompt plus half the output (the mean over the generation)."""
        return self.input_len + self.output_len // 2

    @property
    def max_batch_at_context(self) -> int:
        """Sequences of input_len + output_len tokens whose KV cache fits at once."""
        return self.memory.max_sequences(self.input_len + self.output_len)

    @property
    def batch_fits(self) -> bool:
        return self.max_batch_at_context >= self.batch


def estimate_deployment(model: ModelSpec, hardware: HardwareSpec, quant: QuantSpec, parallel: ParallelSpec,
                        calibration: Calibration | None, batch: int, input_len: int, output_len: int,
                        gpu_memory_utilization: float = 0.9) -> Estimate:
    """Cost one prefill of the batch and one decode step at the mean context; ValueError on impossible lengths."""
    for name, v in (("batch", batch), ("input_len", input_len), ("output_len", output_len)):
        if v <= 0:
            raise ValueError(f"{name}={v} must be > 0")
    if input_len + output_len > model.max_context_tokens:
        raise ValueError(
            f"input_len + output_len = {input_len + output_len} exceeds the context of {model.name} "
            f"({model.max_context_tokens} tokens)"
        )
    memory = plan_memory(model, hardware, quant, parallel, gpu_memory_utilization,
                         max_batched_tokens=max(8192, batch * input_len), max_seqs=max(256, batch))
    cm = CostModel(model, hardware, quant, parallel, calibration)
    prefill = cm.step(BatchShape.build(prefill=[(input_len, 0)] * batch, window=model.sliding_window))
    ctx = input_len + output_len // 2
    decode = cm.step(BatchShape.build(decode_ctx=[ctx] * batch, window=model.sliding_window))
    return Estimate(model, hardware, quant, parallel, cm.calibration, batch, input_len, output_len, prefill, decode,
                    memory, count_params(model))
