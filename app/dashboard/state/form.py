"""Widgets as a table of rows (session key -> path in a config's JSON dump), used in both directions: the widget
values build the plain dict a pydantic config validates, and a config's dump restores the widget values."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from roofsim.app.dashboard.state.common import USER_ERRORS, error_message

Values = Mapping[str, Any]
SKIP = object()  # from_cfg: this row does not restore from that value (the diff then names the field)
OMIT = object()  # to_cfg: write nothing (a technique turned off leaves its table out of the config)
NEVER: dict[str, Any] = {"from_cfg": lambda _: SKIP}  # an uploaded file's path: restoring it needs the upload


def _same(x: Any) -> Any:
    return x


def _always(values: Values) -> bool:
    return True


def is_(key: str, *choices: Any) -> Callable[[Values], bool]:
    """A `when`: the widget `key` holds one of `choices`."""
    return lambda v: v[key] in choices


def all_of(*preds: Callable[[Values], bool]) -> Callable[[Values], bool]:
    """A `when` that holds when every one of `preds` does."""
    return lambda v: all(p(v) for p in preds)


@dataclass(frozen=True)
class Widget:
    """One widget: its session key, where its value lives in the config dump ("replicas.0.tp"), how it is drawn
    (streamlit element, label, options, keyword arguments) and when it is shown (and written)."""

    key: str
    path: str
    widget: str  # selectbox, radio, multiselect, number_input, slider, checkbox, text_input; "" = no widget
    label: str
    default: Any
    options: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    when: Callable[[Values], bool] = _always
    to_cfg: Callable[[Any], Any] = _same
    from_cfg: Callable[[Any], Any] = _same
    absent: Any = SKIP  # the widget value when the path is missing from the dump (e.g. "off")
    kw: Mapping[str, Any] = field(default_factory=dict)

    def choices(self, current: Any = None) -> list[Any]:
        """The options, extended by the current value when it is not one of them (a restored model path, HF id or
        workload name is shown as itself, never replaced by the first option)."""
        opts = list(self.options() if callable(self.options) else self.options or ())
        extra = current if isinstance(current, list | tuple) else [current]
        return opts + [v for v in extra if v is not None and v not in opts]

    def accepts(self, value: Any) -> bool:
        """Whether the widget can hold `value` (number bounds and type; option lists are extended instead)."""
        if self.widget in ("number_input", "slider"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if isinstance(self.default, int) and not isinstance(value, int):
                return False
            lo, hi = self.kw.get("min_value"), self.kw.get("max_value")
            return (lo is None or value >= lo) and (hi is None or value <= hi)
        if self.widget == "checkbox":
            return isinstance(value, bool)
        return True


def defaults(rows: Sequence[Widget]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows:
        out.setdefault(r.key, r.default)
    return out


def _slot(node: Any, part: str | int, empty: Any) -> Any:
    if isinstance(part, int):
        node.extend([None] * (part + 1 - len(node)))
        if node[part] is None:
            node[part] = empty
        return node[part]
    return node.setdefault(part, empty)


def _merge(old: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(old.get(k), dict):
            _merge(old[k], v)
        else:
            old[k] = v


def _put(d: dict[str, Any], path: str, value: Any) -> None:
    """Set d[a][b]... = value along a dotted path (numbers index lists); a dict merges into the table there."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = d
    for part, nxt in zip(parts, parts[1:], strict=False):
        node = _slot(node, part, [] if isinstance(nxt, int) else {})
    old = _slot(node, parts[-1], None)
    if isinstance(value, Mapping) and isinstance(old, dict):
        _merge(old, value)
    else:
        node[parts[-1]] = value


def get_path(dump: Any, path: str) -> Any:
    """dump[a][b]... along a dotted path; SKIP when a step is missing or None."""
    node = dump
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return SKIP
        if node is None:
            return SKIP
    return node


def build_dict(rows: Sequence[Widget], values: Values) -> dict[str, Any]:
    """The config dict the shown widgets describe: each row whose `when` holds writes to_cfg(value) at its path."""
    d: dict[str, Any] = {}
    for r in rows:
        if r.when(values):
            v = r.to_cfg(values[r.key])
            if v is not OMIT:
                _put(d, r.path, v)
    return d


def restore_values(rows: Sequence[Widget], dump: Mapping[str, Any]) -> dict[str, Any]:
    """Widget values read from a config dump by the same paths (defaults where a row cannot show the value)."""
    out = defaults(rows)
    done: set[str] = set()
    for r in rows:
        if r.key in done:
            continue
        raw = get_path(dump, r.path) if r.path else SKIP
        v = r.absent if raw is SKIP else r.from_cfg(raw)
        if v is not SKIP and r.accepts(v):
            out[r.key] = v
            done.add(r.key)
    return out


def _short(v: Any, width: int = 70) -> str:
    text = repr(v)
    return text if len(text) <= width else text[:width - 3] + "..."


def diff_dumps(want: Any, got: Any, path: str = "") -> list[str]:
    """Where two config dumps differ, one line per field (a table whose `kind` differs is one line)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if want.get("kind") != got.get("kind"):
            return [f"{path}.kind = {want.get('kind')!r} (shown as {got.get('kind')!r}; none of that table's fields)"]
        return [line for k in want | got for line in diff_dumps(want.get(k), got.get(k), f"{path}.{k}".lstrip("."))]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [line for i, (a, b) in enumerate(zip(want, got, strict=True))
                for line in diff_dumps(a, b, f"{path}.{i}")]
    if want == got:
        return []
    return [f"{path} = {_short(want)} (shown as {_short(got)})"]


def restore(rows: Sequence[Widget], cfg: BaseModel, build: Callable[[Values], BaseModel]
            ) -> tuple[dict[str, Any], list[str]]:
    """(widget values, fields not restored): the values reproduce `cfg` except the named fields, found by building
    the config from the values and comparing the two dumps (so nothing falls back to a default silently)."""
    dump = cfg.model_dump(mode="json")
    values = restore_values(rows, dump)
    try:
        back = build(values).model_dump(mode="json")
    except USER_ERRORS as err:
        return values, [f"the restored widgets do not make a valid config: {error_message(err)}"]
    return values, diff_dumps(dump, back)
