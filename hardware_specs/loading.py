"""The one loading layer of every file reader: size, encoding, nesting-depth, line-length and row-count limits,
each a named constant checked before parsing, so a malformed or hostile file ends in an InputError naming it."""

from __future__ import annotations

import codecs
import csv
import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from roofsim.hardware_specs.errors import InputError

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_DATA_BYTES",
    "MAX_DOCUMENT_BYTES",
    "MAX_LINE_CHARS",
    "MAX_NESTING_DEPTH",
    "MAX_ROWS",
    "check_rows",
    "check_unique_columns",
    "load_json_file",
    "load_toml_file",
    "open_text_lines",
    "parse_json_text",
    "parse_toml_text",
    "read_csv_records",
    "read_text_file",
]

# Model config.json, hardware TOML, run TOML, calibration profile: files of a few KB (the largest bundled one,
# validation/profiles/a100-sxm-80gb.toml, is 13 KB); 16 MiB is
# over 1000x that.
MAX_CONFIG_BYTES = 16 * 2**20
# A whole-document JSON serving log (vLLM --save-detailed keeps every generated text): parsed in one piece,
# Python objects take ~10x the file, so 512 MiB is what a laptop can hold.
MAX_DOCUMENT_BYTES = 512 * 2**20
# Traces and CSV tables are streamed line by line; the row count (MAX_ROWS) bounds their memory, this the read.
MAX_DATA_BYTES = 8 * 2**30
# Real configs and logs nest < 10 levels; tomllib and pydantic recurse once or more per level, and Python's
# default recursion limit is 1000 frames, so 64 keeps every consumer far from a RecursionError.
MAX_NESTING_DEPTH = 64
# Python csv's default field_size_limit (csv.field_size_limit() == 131072): longer CSV cells fail inside csv,
# so a longer line in any line-oriented file (CSV or JSONL) is refused up front with this name.
MAX_LINE_CHARS = 131_072
# Rows of one trace or table: ~100 bytes of Python objects per parsed row, so 50 M rows is ~5 GB.
MAX_ROWS = 50_000_000

_BYTE_LIMITS = {MAX_CONFIG_BYTES: "MAX_CONFIG_BYTES", MAX_DOCUMENT_BYTES: "MAX_DOCUMENT_BYTES",
                MAX_DATA_BYTES: "MAX_DATA_BYTES"}
_OTHER_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_NEWLINE = b"\n"
_ENCODING_HINT = "roofsim reads UTF-8 (with or without BOM); save the file as UTF-8"


def _check_size(path: Path, what: str, max_bytes: int) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if path.is_dir():
        raise InputError(f"{path}: {what} is a folder, not a file")
    if size > max_bytes:
        name = _BYTE_LIMITS.get(max_bytes, "the size limit")
        raise InputError(f"{path}: {what} is {size:,} bytes, over {name}={max_bytes:,} bytes")


def _check_encoding_head(head: bytes, path: Path, what: str) -> None:
    """UTF-16/32 files are refused by name (a codec error would not say which file or what to do)."""
    for bom, name in _OTHER_ENCODINGS:
        if head.startswith(bom):
            raise InputError(f"{path}: {what} is {name} text; {_ENCODING_HINT}")
    if len(head) >= 2 and (head[0] == 0) != (head[1] == 0):  # BOM-less UTF-16: every other byte is NUL
        raise InputError(f"{path}: {what} looks like UTF-16 text (NUL bytes); {_ENCODING_HINT}")


def _decode_error(e: UnicodeDecodeError, path: Path, what: str, data: bytes) -> InputError:
    where = f" at line {data.count(_NEWLINE, 0, e.start) + 1}"
    return InputError(f"{path}: {what} is not UTF-8 text{where} (byte {e.object[e.start:e.start + 1]!r}: "
                      f"{e.reason}); {_ENCODING_HINT}")


def read_text_file(path: str | Path, *, what: str = "file", max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The whole text of a UTF-8 file (a BOM is dropped); InputError naming the file for a missing, too large,
    UTF-16/32 or undecodable file."""
    path = Path(path)
    _check_size(path, what, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    _check_encoding_head(data[:4], path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _decode_error(e, path, what, data) from None


# ---------------------------------------------------------------------------------------------- nesting depth
_JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOML_SKIP = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*')


_CHUNK_BYTES = 2**22


def _bracket_depth(text: str) -> int:
    """Deepest [ / { nesting of `text` (strings and comments already removed): numpy over 4 MiB chunks, so
    neither a per-character Python loop nor a 4-bytes-per-character temporary for a large log."""
    codes = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    deepest = level = 0
    for start in range(0, codes.size, _CHUNK_BYTES):
        chunk = codes[start:start + _CHUNK_BYTES]
        step = (chunk == 0x5B).view(np.int8) + (chunk == 0x7B).view(np.int8)
        step -= (chunk == 0x5D).view(np.int8) + (chunk == 0x7D).view(np.int8)
        running = np.cumsum(step, dtype=np.int64) + level
        deepest, level = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _data_depth(value: Any) -> int:
    """Depth of parsed lists/dicts (TOML dotted keys nest without brackets); iterative, so never recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING_DEPTH:
            return deepest
        stack.extend((c, depth + 1) for c in children)
    return deepest


def _too_deep(where: str) -> InputError:
    return InputError(f"{where}: nested deeper than MAX_NESTING_DEPTH={MAX_NESTING_DEPTH} levels")


def parse_json_text(text: str, where: str) -> Any:
    """Parse JSON text after checking its nesting depth; InputError naming `where` (file or upload)."""
    if _bracket_depth(_JSON_STRINGS.sub('""', text)) > MAX_NESTING_DEPTH:
        raise _too_deep(where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    except (RecursionError, ValueError) as e:  # ValueError: an integer literal over Python's 4300-digit limit
        raise InputError(f"{where}: not valid JSON: {e}") from None


def parse_toml_text(text: str, where: str) -> dict[str, Any]:
    """Parse TOML text after checking its nesting depth (brackets before, dotted keys after parsing)."""
    if _bracket_depth(_TOML_SKIP.sub('""', text)) > MAX_NESTING_DEPTH:
        raise _too_deep(where)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{where}: not valid TOML (TOML syntax error: {e})") from None
    except (RecursionError, ValueError) as e:
        raise InputError(f"{where}: not valid TOML: {e}") from None
    if _data_depth(data) > MAX_NESTING_DEPTH:
        raise _too_deep(where)
    return data


def load_json_file(path: str | Path, *, what: str = "JSON file", max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """The parsed JSON of a file, within the size, encoding and nesting limits."""
    return parse_json_text(read_text_file(path, what=what, max_bytes=max_bytes), str(path))


def load_toml_file(path: str | Path, *, what: str = "TOML file", max_bytes: int = MAX_CONFIG_BYTES
                   ) -> dict[str, Any]:
    """The parsed TOML table of a file, within the size, encoding and nesting limits."""
    return parse_toml_text(read_text_file(path, what=what, max_bytes=max_bytes), str(path))


# ------------------------------------------------------------------------------------------ line-oriented files
def _first_decode_error(path: Path, what: str) -> InputError:
    """The error for the first undecodable line (the text layer decodes ahead, so its position is not the line's);
    decodes in 16 MiB chunks so a large file is never held whole."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    line = 1
    with path.open("rb") as raw:
        for chunk in iter(lambda: raw.read(2**24), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                line += chunk.count(_NEWLINE, 0, max(e.start, 0))
                return InputError(f"{path}: {what} is not UTF-8 text at line {line} ({e.reason}); {_ENCODING_HINT}")
            line += chunk.count(_NEWLINE)
    return InputError(f"{path}: {what} is not UTF-8 text (it ends inside a character); {_ENCODING_HINT}")


def _limited_lines(f: IO[str], path: Path, what: str) -> Iterator[str]:
    line_no = 0
    while True:
        try:
            line = f.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError:
            raise _first_decode_error(path, what) from None
        if not line:
            return
        line_no += 1
        if len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            raise InputError(f"{path}:{line_no}: {what} line is longer than MAX_LINE_CHARS={MAX_LINE_CHARS:,} "
                             f"characters (file {path})")
        yield line


@contextmanager
def open_text_lines(path: str | Path, *, what: str = "file", max_bytes: int = MAX_DATA_BYTES
                    ) -> Iterator[Iterator[str]]:
    """The lines of a UTF-8 text file (BOM dropped, newlines kept, for csv.reader), each at most MAX_LINE_CHARS
    characters; InputError naming the file for a missing, too large, UTF-16/32 or undecodable file."""
    path = Path(path)
    _check_size(path, what, max_bytes)
    try:
        with path.open("rb") as raw:
            head = raw.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    _check_encoding_head(head, path, what)
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield _limited_lines(f, path, what)


def read_csv_records(path: str | Path, *, what: str = "CSV table", max_bytes: int = MAX_DATA_BYTES
                     ) -> tuple[list[str], list[tuple[int, dict[Any, Any]]]]:
    """(header with names stripped, [(line number, csv.DictReader row)]) of a CSV file within the loading limits;
    InputError naming the file for malformed CSV, a repeated column or more than MAX_ROWS rows. Extra cells land
    under the key None and missing cells are None, as in csv.DictReader."""
    path = Path(path)
    with open_text_lines(path, what=what, max_bytes=max_bytes) as lines:
        reader = csv.DictReader(lines)
        records: list[tuple[int, dict[Any, Any]]] = []
        try:
            header = [h.strip() for h in (reader.fieldnames or [])]
            check_unique_columns(header, path)
            reader.fieldnames = header
            for row in reader:
                records.append((reader.line_num, row))
                check_rows(len(records), path)
        except csv.Error as e:
            raise InputError(f"{path} line {reader.line_num}: malformed CSV ({e})") from None
    return header, records


def check_unique_columns(header: Iterable[str], path: str | Path) -> None:
    """InputError naming the file and every column a CSV header repeats (csv.DictReader would keep the last)."""
    cols = list(header)
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise InputError(f"{path} line 1: header repeats column(s) {dup}; each column must appear once")


def check_rows(count: int, path: str | Path, what: str = "rows") -> None:
    """InputError once a reader has collected more than MAX_ROWS rows of one file."""
    if count > MAX_ROWS:
        raise InputError(f"{path}: more than MAX_ROWS={MAX_ROWS:,} {what}; split the file")
