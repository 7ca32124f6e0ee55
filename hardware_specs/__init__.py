"""Accelerator descriptors: the HardwareSpec schema, the bundled catalog and the loader."""

from hardware_specs.catalog import hardware_ids, list_hardware, load_hardware
from hardware_specs.errors import InputError, RoofsimError, UnknownNameError
from hardware_specs.spec import DTYPE_BYTES, DTYPES, HardwareSpec

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
