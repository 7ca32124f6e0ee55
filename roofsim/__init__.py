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

# The public names, imported on first use (PEP 562): `import roofsim.app.cli` (the command line) does not pay for
# the whole API, so start-up stays short and a Ctrl-C during it is handled (roofsim/__main__.py).
_EXPORTS: dict[str, str] = {
    "Estimate": "roofsim.api",
    "estimate": "roofsim.api",
    "load_config": "roofsim.api",
    "plan": "roofsim.api",
    "quant_for": "roofsim.api",
    "quant_of": "roofsim.api",
    "resolve_calibration": "roofsim.api",
    "simulate": "roofsim.api",
    "simulate_ensemble": "roofsim.api",
    "validate_benchmarks": "roofsim.api",
    "validate_kernels": "roofsim.api",
    "validate_log": "roofsim.api",
    "BatchShape": "roofsim.model.batch",
    "Calibration": "roofsim.model.cost",
    "CostModel": "roofsim.model.cost",
    "HardwareSpec": "roofsim.hardware_specs.spec",
    "InputError": "roofsim.hardware_specs.errors",
    "list_hardware": "roofsim.hardware_specs.catalog",
    "list_models": "roofsim.model.loader",
    "load_hardware": "roofsim.hardware_specs.catalog",
    "load_model": "roofsim.model.loader",
    "ModelSpec": "roofsim.model.spec",
    "ParallelSpec": "roofsim.model.spec",
    "QuantSpec": "roofsim.model.spec",
    "RoofsimError": "roofsim.hardware_specs.errors",
    "SimConfig": "roofsim.simulator.config",
    "StepCost": "roofsim.model.cost",
    "UnknownNameError": "roofsim.hardware_specs.errors",
    "ErrorModel": "roofsim.model.uncertainty",
    "EnsembleResult": "roofsim.simulator.ensemble",
    "error_model_for": "roofsim.validation.profiles",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib  # noqa: PLC0415

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'roofsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
