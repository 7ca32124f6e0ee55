"""Helpers every dashboard page shares: user-error messages, saved uploads, the shared data folder, kind lists read
from the config unions, comma-separated lists, metric parsing and the scenario TOML."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ValidationError

from roofsim.hardware_specs.errors import RoofsimError
from roofsim.model.spec import QuantSpec

# Errors that mean "the user asked for something impossible": shown with st.error, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (RoofsimError, ValueError, KeyError, ValidationError,
                                                FileNotFoundError, UnicodeDecodeError)

WEIGHT_CHOICES: tuple[str, ...] = get_args(QuantSpec.model_fields["weight_dtype"].annotation)
# "checkpoint": the checkpoint's own format (its quantization_config; bf16 for an unquantised one), as the CLI runs
# without --weight-dtype (app.common.quant_and_notes)
CHECKPOINT = "checkpoint"
WEIGHT_OR_CHECKPOINT: tuple[str, ...] = (CHECKPOINT, *WEIGHT_CHOICES)
ACTIVATION_CHOICES: tuple[str, ...] = ("auto", *get_args(QuantSpec.model_fields["activation_dtype"].annotation))
KV_CHOICES: tuple[str, ...] = ("auto", *get_args(QuantSpec.model_fields["kv_dtype"].annotation))
MAX_SEED = 2**53 - 1  # the browser holds numbers as doubles: larger integers would not survive a widget


def error_message(err: BaseException) -> str:
    """One readable message for a user error (pydantic errors listed field by field, KeyError unquoted)."""
    if isinstance(err, ValidationError):
        lines = [f"invalid {err.title}:"]
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "(root)"
            lines.append(f"field {loc}: {e['msg']}")
        return "\n".join(lines)
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__


def parse_metric(text: str) -> float:
    """The number at the start of a formatted metric ('8.811 ms' -> 8.811)."""
    head = text.strip().split()[0].replace(",", "")
    value = float(head)
    if not math.isfinite(value):
        raise ValueError(f"metric {text!r} is not a finite number")
    return value


def kinds(union: Any) -> tuple[str, ...]:
    """The `kind` values of a discriminated union of pydantic models, in declaration order (the widget options
    follow the config: a new policy appears in the dashboard without editing it)."""
    if get_origin(union) is Annotated:
        union = get_args(union)[0]
    members = get_args(union) or (union,)
    return tuple(v for m in members for v in get_args(m.model_fields["kind"].annotation))


def literal_values(model: type[BaseModel], field: str) -> tuple[Any, ...]:
    """The values of a pydantic field typed as a Literal (e.g. QuantSpec.weight_dtype)."""
    return get_args(model.model_fields[field].annotation)


def parse_list(text: str, what: str, kind: type = float) -> tuple[Any, ...]:
    """'0.8, 0.7' -> (0.8, 0.7); ValueError naming the widget for anything else."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        vals = tuple(kind(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of {kind.__name__} values") from None
    if not vals:
        raise ValueError(f"{what}: give at least one value")
    return vals


def format_list(vals: Sequence[Any]) -> str:
    """(0.8, 0.7) -> '0.8, 0.7'; repr keeps every digit, so parse_list reads back the same floats."""
    return ", ".join(repr(v) for v in vals)


def config_toml(cfg: BaseModel) -> str:
    """The TOML a config is downloaded as (`roofsim simulate --config` reads it back to an equal config)."""
    return tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True))


def shared_data_dir() -> Path:
    """../shared/data next to the checkout (or $ROOFSIM_SHARED_DATA): measured data the examples come from."""
    env = os.environ.get("ROOFSIM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data"


_UPLOADS: list[tempfile.TemporaryDirectory[str]] = []  # one per process, removed when the process exits


def save_upload(name: str, data: bytes, folder: Path | None = None) -> Path:
    """Write an uploaded file to a private temp folder under its own (sanitised) name; readers take paths.
    The folders live under one temporary directory of this process, deleted when it exits."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name) or "upload"
    if folder is None:
        if not _UPLOADS:
            _UPLOADS.append(tempfile.TemporaryDirectory(prefix="roofsim-upload-"))
        folder = Path(tempfile.mkdtemp(dir=_UPLOADS[0].name))
    path = folder / safe
    path.write_bytes(data)
    return path
