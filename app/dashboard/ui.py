"""Streamlit helpers shared by the dashboard pages: config widgets, cached computations, error display."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from roofsim.app.dashboard.state.common import (
    ACTIVATION_CHOICES,
    KV_CHOICES,
    WEIGHT_OR_CHECKPOINT,
    error_message,
    save_upload,
)
from roofsim.app.dashboard.state.form import Widget
from roofsim.app.dashboard.state.step import StepConfig, step_view
from roofsim.hardware_specs.catalog import hardware_ids
from roofsim.model.loader import model_ids


def show_error(err: BaseException, what: str = "") -> None:
    """The error as a readable message in the page (never a traceback)."""
    st.error((f"{what}: " if what else "") + error_message(err), icon=":material/error:")


@st.cache_data(max_entries=512, show_spinner=False)
def cached_step_view(key: str) -> dict[str, Any]:
    """step_view memoised on the config's JSON: revisiting a setting costs a dict lookup."""
    return step_view(StepConfig.from_key(key))


@st.cache_resource(show_spinner=False)
def saved_upload(up: Any) -> str:
    """The path of an uploaded file, saved once per content and name for the session (readers take paths);
    '' when nothing is uploaded."""
    if up is None:
        return ""
    data = up.getvalue()
    key = "upload:" + hashlib.sha256(data).hexdigest() + ":" + up.name
    if key not in st.session_state:
        st.session_state[key] = str(save_upload(up.name, data))
    return str(st.session_state[key])


def widget_drawer(rows: Sequence[Widget], values: dict[str, Any]) -> Callable[..., Any]:
    """w(key, box=st.sidebar): draw the widget of `key` (its first row with an element) when one of its rows applies
    to `values`, record its value there, and return it (None when not drawn: the row's default stays in `values`).

    A restored value that is not among the options is added to them, never replaced by the first option."""
    by_key: dict[str, list[Widget]] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)

    def w(key: str, box: Any = st.sidebar) -> Any:
        mine = by_key[key]
        if not any(r.when(values) for r in mine):
            return None
        row = next(r for r in mine if r.widget)
        if key not in st.session_state:
            st.session_state[key] = copy.copy(row.default)
        kw = dict(row.kw)
        if row.options is not None:
            kw["options"] = row.choices(st.session_state[key])
        values[key] = getattr(box, row.widget)(row.label, key=key, **kw)
        return values[key]

    return w


def ids() -> tuple[list[str], list[str]]:
    return hardware_ids(), model_ids()


def _index(options: list[str] | tuple[str, ...], value: str) -> int:
    return list(options).index(value) if value in options else 0


def step_config_widgets(box: Any, default: StepConfig, prefix: str = "", deployment_only: bool = False,
                        base: StepConfig | None = None) -> StepConfig:
    """Widgets for one StepConfig inside `box` (sidebar, column or expander); keys are prefix + field name.

    With deployment_only, batch/context fields come from `base` (the side-by-side comparison shares them).
    """
    hw_ids, m_ids = ids()
    hw = box.selectbox("Hardware", hw_ids, index=_index(hw_ids, default.hardware), key=f"{prefix}hardware")
    mdl = box.selectbox("Model", m_ids, index=_index(m_ids, default.model), key=f"{prefix}model")
    c1, c2, c3 = box.columns(3)
    wd = c1.selectbox("Weights", WEIGHT_OR_CHECKPOINT, index=_index(WEIGHT_OR_CHECKPOINT, default.weight_dtype),
                      key=f"{prefix}weight_dtype", help="checkpoint: the format the checkpoint ships in (its "
                      "quantization_config; bf16 for an unquantised one); a dtype overrides it")
    ad = c2.selectbox("Activations", ACTIVATION_CHOICES, index=_index(ACTIVATION_CHOICES, default.activation_dtype),
                      key=f"{prefix}activation_dtype")
    kv = c3.selectbox("KV cache", KV_CHOICES, index=_index(KV_CHOICES, default.kv_dtype), key=f"{prefix}kv_dtype")
    c1, c2 = box.columns(2)
    tp = c1.number_input("TP", min_value=1, max_value=128, value=default.tp, step=1, key=f"{prefix}tp")
    pp = c2.number_input("PP", min_value=1, max_value=64, value=default.pp, step=1, key=f"{prefix}pp")
    if deployment_only and base is not None:
        return base.with_(hardware=hw, model=mdl, weight_dtype=wd, activation_dtype=ad, kv_dtype=kv,
                          tp=int(tp), pp=int(pp))
    batch = box.number_input("Batch (concurrent requests)", min_value=1, max_value=8192, value=default.batch,
                             step=1, key=f"{prefix}batch")
    c1, c2 = box.columns(2)
    inp = c1.number_input("Input tokens", min_value=1, max_value=1_000_000, value=default.input_len, step=128,
                          key=f"{prefix}input_len")
    out = c2.number_input("Output tokens", min_value=1, max_value=1_000_000, value=default.output_len, step=64,
                          key=f"{prefix}output_len")
    util = box.slider("GPU memory utilization", 0.5, 1.0, value=default.gpu_memory_utilization, step=0.01,
                      key=f"{prefix}gpu_memory_utilization")
    return StepConfig(hardware=hw, model=mdl, weight_dtype=wd, activation_dtype=ad, kv_dtype=kv, tp=int(tp),
                      pp=int(pp), batch=int(batch), input_len=int(inp), output_len=int(out),
                      gpu_memory_utilization=float(util))
