"""Accelerator descriptors: the HardwareSpec schema, the bundled catalog and the loader."""

from roofsim.hardware_specs.catalog import hardware_ids, list_hardware, load_hardware
from roofsim.hardware_specs.errors import InputError, RoofsimError, UnknownNameError
from roofsim.hardware_specs.spec import DTYPE_BYTES, DTYPES, HardwareSpec

__all__ = [
    "DTYPE_BYTES",
    "DTYPES",
    "HardwareSpec",
    "InputError",
    "RoofsimError",
    "UnknownNameError",
    "hardware_ids",
    "list_hardware",
    "load_hardware",
]
