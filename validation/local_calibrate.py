"""Moved to roofsim.validation.local (measure.py, hardware.py, calibrate.py). This alias stays only until
tests/app/test_dashboard_apptest.py imports from roofsim.validation.local; delete it then."""

from roofsim.validation.local.calibrate import write_model_config
from roofsim.validation.local.hardware import dumps_hardware

__all__ = ["dumps_hardware", "write_model_config"]
