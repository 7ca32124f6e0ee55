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
