"""The hardware catalog: loads HardwareSpec TOML files (bundled data/ plus folders in ROOFSIM_HARDWARE_PATH)
and resolves device ids and aliases case-insensitively."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.hardware_specs.loading import load_toml_file
from roofsim.hardware_specs.spec import HardwareSpec

logger = logging.getLogger(__name__)

ENV_VAR = "ROOFSIM_HARDWARE_PATH"
DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = [
    "DATA_DIR",
    "ENV_VAR",
    "clear_cache",
    "hardware_file",
    "hardware_from_dict",
    "hardware_ids",
    "list_hardware",
    "load_hardware",
    "load_hardware_file",
    "normalize_name",
    "power_capped",
]


def normalize_name(name: str) -> str:
    """Canonical lookup key: lower case, runs of spaces/underscores/dashes become one dash."""
    return re.sub(r"[\s_\-]+", "-", name.strip().lower())


# --------------------------------------------------------------------------------------- single-file loading


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (`X`, `X | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """Valid field names of the (sub)table that holds `loc`'s last element."""
    model: type[BaseModel] | None = HardwareSpec
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        model = _submodel(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def _describe(error: Mapping[str, Any]) -> str:
    """One line for one pydantic error: `field.path: constraint (got value)`."""
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "<top level>"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        valid = _fields_at(loc)
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown field{hint}; valid fields here: {', '.join(valid)}"
    got = error.get("input")
    shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{where}: {error['msg']} (got {shown})"


def _arrays_to_tuples(value: Any) -> Any:
    """TOML arrays arrive as lists; strict validation wants tuples for the tuple fields (and dicts as tables)."""
    if isinstance(value, Mapping):
        return {k: _arrays_to_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_arrays_to_tuples(v) for v in value)
    return value


def hardware_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> HardwareSpec:
    """Validate a parsed TOML table into a HardwareSpec; InputError names `source` and every bad field."""
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: expected a table of hardware fields, got {type(data).__name__}")
    try:
        # strict: a typo like `tdp_w = true` or `tdp_w = "700"` fails instead of being coerced to a number.
        return HardwareSpec.model_validate(_arrays_to_tuples(data), strict=True)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors(include_url=False)]
        raise InputError(f"invalid hardware file {source}:\n  " + "\n  ".join(lines)) from None


def load_hardware_file(path: str | Path) -> HardwareSpec:
    """Read one hardware TOML file. InputError for a TOML syntax error, an invalid field or a file over a
    roofsim.hardware_specs.loading limit; FileNotFoundError for a missing file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"hardware file {path} does not exist")
    try:
        data = load_toml_file(path, what="hardware file")
    except InputError as exc:
        raise InputError(f"invalid hardware file {exc}") from None
    return hardware_from_dict(data, source=str(path))


# --------------------------------------------------------------------------------------- the catalog


@dataclass(frozen=True)
class _Catalog:
    specs: tuple[HardwareSpec, ...]  # sorted by id
    files: Mapping[str, Path]  # id -> file
    names: Mapping[str, str]  # normalized id/alias -> id
    by_id: Mapping[str, HardwareSpec]


def _search_dirs(env_value: str) -> list[Path]:
    dirs = [DATA_DIR]
    for part in env_value.split(os.pathsep):
        if not part.strip():
            continue
        folder = Path(part).expanduser()
        if not folder.is_dir():
            raise InputError(f"{ENV_VAR} lists {part!r}, which is not a folder")
        if folder.resolve() != DATA_DIR:
            dirs.append(folder)
    return dirs


@functools.lru_cache(maxsize=8)
def _catalog(env_value: str) -> _Catalog:
    files: dict[str, Path] = {}
    specs: dict[str, HardwareSpec] = {}
    names: dict[str, str] = {}
    for folder in _search_dirs(env_value):
        for path in sorted(folder.glob("*.toml")):
            spec = load_hardware_file(path)
            if spec.id in files:
                raise InputError(
                    f"hardware id {spec.id!r} is defined twice: in {files[spec.id]} and in {path}; "
                    "give the user file a different id"
                )
            keys = {normalize_name(spec.id)} | {normalize_name(a) for a in spec.aliases}
            for key in sorted(keys):
                owner = names.get(key)
                if owner is not None:
                    raise InputError(
                        f"hardware name {key!r} of {spec.id!r} ({path}) is already the id or an alias of "
                        f"{owner!r} ({files[owner]})"
                    )
                names[key] = spec.id
            files[spec.id] = path
            specs[spec.id] = spec
            logger.debug("loaded hardware %s from %s", spec.id, path)
    ordered = tuple(specs[i] for i in sorted(specs))
    return _Catalog(
        specs=ordered,
        files=types.MappingProxyType(files),
        names=types.MappingProxyType(names),
        by_id=types.MappingProxyType(specs),
    )


def _current() -> _Catalog:
    return _catalog(os.environ.get(ENV_VAR, ""))


def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(".toml") or "/" in name or os.sep in name


# "<device>@<watts>w": the device with its board power capped (nvidia-smi --power-limit), e.g. "h100-sxm@490w"
_POWER_CAP = re.compile(r"^(?P<base>.+)@(?P<watts>\d+(?:\.\d+)?)\s*w$", re.IGNORECASE)


def power_capped(spec: HardwareSpec, cap_w: float) -> HardwareSpec:
    """`spec` with its board power limited to `cap_w` (id `<id>-cap<W>w`). Only the power limit changes: the cost
    model runs a kernel whose power demand exceeds the limit at the limited rate (model.cost.tensor_power_factor:
    the tensor GEMMs), and memory-bound kernels, whose demand stays below it, keep their speed. Under a cap the
    driver lowers the SM clock until the board draws no more than the limit (NVIDIA nvidia-smi documentation,
    "-pl, --power-limit"; Ma et al. 2026, arXiv 2605.11999: decode on a 700 W H200 draws 137-300 W, so no cap in
    that range throttles it)."""
    if not spec.power.idle_w < cap_w <= spec.power.tdp_w:
        raise ValueError(f"power cap {cap_w:g} W must lie above idle_w={spec.power.idle_w:g} and at most "
                         f"tdp_w={spec.power.tdp_w:g} of {spec.id}")
    if cap_w == spec.power.tdp_w:
        return spec
    label = f"{cap_w:g}".replace(".", "p")
    return spec.model_copy(update={
        "id": f"{spec.id}-cap{label}w", "name": f"{spec.name} (power capped at {cap_w:g} W)", "aliases": (),
        "power": spec.power.model_copy(update={"tdp_w": float(cap_w)}),
        "sources": spec.sources.model_copy(update={
            "power": f"power limit {cap_w:g} W set by the user (of the {spec.power.tdp_w:g} W TDP); {spec.sources.power}"}),
    })


def load_hardware(name_or_path: str | Path) -> HardwareSpec:
    """A device by id or alias (case-insensitive; `_`/space may replace `-`), or by path to a TOML file;
    `<device>@<watts>w` is the device with its power capped (power_capped)."""
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        return load_hardware_file(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(f"load_hardware expects a str or Path, got {type(name_or_path).__name__}")
    cap = _POWER_CAP.match(name_or_path.strip())
    if cap is not None:
        return power_capped(load_hardware(cap["base"]), float(cap["watts"]))
    catalog = _current()
    hw_id = catalog.names.get(normalize_name(name_or_path))
    if hw_id is None:
        known = [s.id for s in catalog.specs] + [a for s in catalog.specs for a in s.aliases]
        raise UnknownNameError("hardware", name_or_path, known)
    return catalog.by_id[hw_id]


def list_hardware() -> list[HardwareSpec]:
    """Every device in the catalog (bundled + ROOFSIM_HARDWARE_PATH), sorted by id."""
    return list(_current().specs)


def hardware_ids() -> list[str]:
    """Sorted ids of every device in the catalog."""
    return [s.id for s in _current().specs]


def hardware_file(hw_id: str) -> Path:
    """The TOML file a catalog device was loaded from."""
    spec = load_hardware(hw_id)
    return _current().files[spec.id]


def clear_cache() -> None:
    """Forget loaded catalogs (after adding or editing a file in a search folder)."""
    _catalog.cache_clear()
