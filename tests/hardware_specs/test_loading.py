"""The loading layer's limits: each refusal is an InputError naming the file and the limit's constant."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from roofsim.hardware_specs import loading
from roofsim.hardware_specs.errors import InputError
from roofsim.hardware_specs.loading import (
    MAX_CONFIG_BYTES,
    MAX_NESTING_DEPTH,
    load_json_file,
    load_toml_file,
    open_text_lines,
    parse_json_text,
    read_csv_records,
)


def test_utf8_with_and_without_bom_reads_the_same(tmp_path: Path) -> None:
    plain, bom = tmp_path / "a.json", tmp_path / "b.json"
    plain.write_bytes(b'{"x": [1, "[[["]}')
    bom.write_bytes(codecs.BOM_UTF8 + plain.read_bytes())
    assert load_json_file(plain) == load_json_file(bom) == {"x": [1, "[[["]}


def test_nesting_at_the_limit_reads_and_one_more_level_is_refused(tmp_path: Path) -> None:
    ok = "[" * MAX_NESTING_DEPTH + "]" * MAX_NESTING_DEPTH
    assert parse_json_text(ok, "<upload>") is not None
    with pytest.raises(InputError, match=r"<upload>: nested deeper than MAX_NESTING_DEPTH=64"):
        parse_json_text("[" + ok + "]", "<upload>")
    toml = tmp_path / "t.toml"
    toml.write_text("s = '" + "[" * 500 + "'\n# " + "{" * 500 + "\n")  # brackets in strings/comments do not nest
    assert load_toml_file(toml) == {"s": "[" * 500}


def test_file_over_the_size_limit_names_the_constant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.toml"
    path.write_text("a = 1\n")
    monkeypatch.setitem(loading._BYTE_LIMITS, 4, "MAX_CONFIG_BYTES")
    with pytest.raises(InputError, match=r"big\.toml: TOML file is 6 bytes, over MAX_CONFIG_BYTES=4 bytes"):
        load_toml_file(path, max_bytes=4)
    assert MAX_CONFIG_BYTES == 16 * 2**20


def test_missing_file_and_folder_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.json: JSON file not found"):
        load_json_file(tmp_path / "nope.json")
    with pytest.raises(InputError, match="is a folder"):
        load_json_file(tmp_path)


def test_line_limit_and_utf16_in_line_files(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1," + "2" * (loading.MAX_LINE_CHARS + 1) + "\n")
    with open_text_lines(path) as lines, pytest.raises(InputError, match=r"t\.csv:2: .*MAX_LINE_CHARS=131,072"):
        list(lines)
    path.write_bytes("a,b\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"t\.csv: file is UTF-16 text"), open_text_lines(path):
        pass


def test_csv_records_strip_header_and_refuse_repeated_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(codecs.BOM_UTF8 + b" a , b\n1,2\n3\n")
    header, records = read_csv_records(path)
    assert header == ["a", "b"] and records == [(2, {"a": "1", "b": "2"}), (3, {"a": "3", "b": None})]
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(InputError, match=r"t\.csv line 1: header repeats column\(s\) \['a'\]"):
        read_csv_records(path)
