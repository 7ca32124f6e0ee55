"""Moved to roofsim.validation.local (measure.py, hardware.py, calibrate.py, serve.py). This alias stays only until
tests/app/test_dashboard_apptest.py imports from roofsim.validation.local; delete it then."""

from roofsim.validation.local.hardware import dumps_hardware
from roofsim.validation.local.serve import write_model_config

__all__ = ["dumps_hardware", "write_model_config"]
