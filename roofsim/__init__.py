"""roofsim: predict how fast, how cheaply and how reliably an LLM is served on given hardware.

The packages install as `roofsim.hardware_specs`, `roofsim.model`, `roofsim.simulator`, `roofsim.validation` and
`roofsim.app`; this module is the documented public API (docs/api.md).
"""

from __future__ import annotations

from pathlib import Path as _Path

# In a source checkout the subpackages are the top-level folders beside this one (pyproject.toml maps them under
# `roofsim` when installing); let `import roofsim.model` find them there too, so tests and scripts run from a
# checkout import the same files an editable install does.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "model" / "cost.py").is_file() and str(_checkout) not in __path__:
    __path__.append(str(_checkout))

from roofsim.api import (  # noqa: E402 (after the checkout path set-up above)
    Estimate,
    estimate,
    load_config,
    plan,
    quant_for,
    quant_of,
    resolve_calibration,
    simulate,
    validate_benchmarks,
    validate_kernels,
    validate_log,
)
from roofsim.hardware_specs.catalog import list_hardware, load_hardware  # noqa: E402
from roofsim.hardware_specs.errors import InputError, RoofsimError, UnknownNameError  # noqa: E402
from roofsim.hardware_specs.spec import HardwareSpec  # noqa: E402
from roofsim.model.batch import BatchShape  # noqa: E402
from roofsim.model.cost import Calibration, CostModel, StepCost  # noqa: E402
from roofsim.model.loader import list_models, load_model  # noqa: E402
from roofsim.model.spec import ModelSpec, ParallelSpec, QuantSpec  # noqa: E402
from roofsim.simulator.config import SimConfig  # noqa: E402

__all__ = [
    "BatchShape",
    "Calibration",
    "CostModel",
    "Estimate",
    "HardwareSpec",
    "InputError",
    "ModelSpec",
    "ParallelSpec",
    "QuantSpec",
    "RoofsimError",
    "SimConfig",
    "StepCost",
    "UnknownNameError",
    "estimate",
    "list_hardware",
    "list_models",
    "resolve_calibration",
    "load_config",
    "load_hardware",
    "load_model",
    "plan",
    "quant_for",
    "quant_of",
    "simulate",
    "validate_benchmarks",
    "validate_kernels",
    "validate_log",
]
