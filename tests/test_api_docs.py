"""docs/api.md's examples run as doctests: the public API page shows what the current code returns."""

import doctest
from pathlib import Path

import roofsim

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_page_examples_run() -> None:
    result = doctest.testfile(str(DOC), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                              raise_on_error=False, verbose=False)
    assert result.attempted > 10
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in docs/api.md failed (see output)"


def test_every_public_name_is_documented_and_exported() -> None:
    text = DOC.read_text()
    for name in roofsim.__all__:
        assert hasattr(roofsim, name), name
    for fn in ("load_model", "load_hardware", "estimate", "simulate", "plan", "validate_kernels",
               "validate_benchmarks", "validate_log", "load_config"):
        assert f"`{fn}(" in text, f"{fn} missing from docs/api.md"
        assert getattr(roofsim, fn).__doc__, f"{fn} has no docstring"
