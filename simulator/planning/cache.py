"""On-disk cache of evaluated planner points: one JSON file per (simulation config, roofsim code fingerprint),
written atomically, so re-running or widening a capacity plan reuses every simulation already done."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from roofsim.simulator.config import SimConfig
from roofsim.simulator.workload import TraceWorkload

logger = logging.getLogger(__name__)

CACHE_ENV = "ROOFSIM_CACHE_DIR"
# Bump when the stored record layout changes (old files are then simply never looked up again).
RECORD_FORMAT = 1
_PACKAGES = ("hardware_specs", "model", "simulator")
# The planning package decides which configs to simulate, not what a simulation returns (a config's key holds
# the config itself); of it only the module that turns a run into the stored value counts.
_PLANNING = Path("simulator", "planning")
_PLANNING_KEPT = {"evaluate.py"}
_SUFFIXES = (".py", ".toml", ".json")
_ROOT = Path(__file__).resolve().parents[2]  # the checkout, or site-packages/roofsim when installed


def default_cache_dir() -> Path:
    """$ROOFSIM_CACHE_DIR, else $XDG_CACHE_HOME/roofsim/plan, else ~/.cache/roofsim/plan."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "roofsim" / "plan"


def fingerprint_files() -> list[Path]:
    """The source and data files a simulation result depends on, relative to the folder holding the packages."""
    out = []
    for pkg in _PACKAGES:
        for path in sorted((_ROOT / pkg).rglob("*")):
            rel = path.relative_to(_ROOT)
            if path.suffix not in _SUFFIXES or "__pycache__" in rel.parts:
                continue
            if _PLANNING in rel.parents and rel.name not in _PLANNING_KEPT:
                continue
            out.append(rel)
    return out


@functools.cache
def code_fingerprint() -> str:
    """roofsim version plus a hash of every source and data file a simulation result depends on: an edited
    cost model, scheduler or hardware file invalidates the cache instead of serving stale numbers."""
    try:
        version = metadata.version("roofsim")
    except metadata.PackageNotFoundError:
        version = "unknown"
    h = hashlib.sha256(version.encode())
    for rel in fingerprint_files():
        h.update(str(rel).encode())
        h.update((_ROOT / rel).read_bytes())
    return f"{version}+{h.hexdigest()[:16]}"


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def point_key(config: SimConfig) -> str:
    """Hash of the config's canonical JSON, the code fingerprint and, for a trace workload, the trace file's
    content (the path alone would serve stale results after the file changes)."""
    payload: dict[str, Any] = {"config": config.model_dump(mode="json"), "code": code_fingerprint(),
                               "format": RECORD_FORMAT}
    wl = config.workload
    if isinstance(wl, TraceWorkload):
        st = os.stat(wl.path)
        payload["trace_sha256"] = _file_digest(str(Path(wl.path).resolve()), st.st_size, st.st_mtime_ns)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class PointCache:
    """Directory of `<key[:2]>/<key>.json` records. Reads of missing or corrupt files return None."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # a torn or foreign file: recompute rather than fail the plan
            logger.warning("ignoring unreadable cache record %s: %s", path, e)
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            return None
        value = record.get("value")
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Write atomically: a temporary file in the same directory, then os.replace (readers never see half)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key": key, "value": value}, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


__all__ = ["CACHE_ENV", "PointCache", "code_fingerprint", "default_cache_dir", "fingerprint_files",
           "point_key"]
