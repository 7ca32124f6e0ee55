"""Trace readers: hand-written rows of every format, malformed rows name file/line/field, the real shared traces."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roofsim.hardware_specs.errors import InputError, UnknownNameError
from roofsim.simulator.traces import detect_format, read_trace
from roofsim.simulator.workload import Trace


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------- each format, known values

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:16:00.0000000,1,1
"""


def test_azure_rebased_seconds_with_sub_microsecond_digits(tmp_path):
    tr = read_trace(write(tmp_path, "az.csv", AZURE))
    np.testing.assert_allclose(tr.arrival_s, [0.0, 4.314579, 13.31941], atol=1e-9)
    np.testing.assert_array_equal(tr.input_tokens, [374, 396, 1])
    np.testing.assert_array_equal(tr.output_tokens, [44, 109, 1])
    assert tr.hash_ids is None and tr.source == "az.csv"


def test_azure_2024_timezone_suffix(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.5+00:00,10,2\n2024-05-10 02:00:01+02:00,5,3\n"
    tr = read_trace(write(tmp_path, "a24.csv", text), "azure")
    np.testing.assert_allclose(tr.arrival_s, [0.0, 0.5])  # 02:00:01+02:00 = 00:00:01 UTC


def test_vidur_processed(tmp_path):
    text = "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n4.314579,396,109\n"
    tr = read_trace(write(tmp_path, "v.csv", text))
    np.testing.assert_allclose(tr.arrival_s, [0.0, 4.314579])
    assert tr.input_tokens.tolist() == [374, 396] and tr.output_tokens.tolist() == [44, 109]


def test_mooncake_ms_and_hash_ids(tmp_path):
    text = ('{"timestamp": 0, "input_length": 700, "output_length": 5, "hash_ids": [0, 1]}\n'
            '{"timestamp": 1500, "input_length": 1100, "output_length": 9, "hash_ids": [0, 2, 3]}\n')
    tr = read_trace(write(tmp_path, "m.jsonl", text))
    np.testing.assert_allclose(tr.arrival_s, [0.0, 1.5])
    assert tr.hash_ids == ((0, 1), (0, 2, 3))
    assert tr.input_tokens.tolist() == [700, 1100]


BURST = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,Conversation log
"""


def test_burstgpt_failed_rows_raise_unless_drop_failed(tmp_path, caplog):
    p = write(tmp_path, "b.csv", BURST)
    with pytest.raises(InputError, match=r"b\.csv:3: field 'Response tokens'.*1 such rows"):
        read_trace(p)
    with caplog.at_level(logging.WARNING, logger="roofsim.simulator.traces"):
        tr = read_trace(p, drop_failed=True)
    assert "dropped 1 failed request" in caplog.text
    np.testing.assert_allclose(tr.arrival_s, [0.0, 113.0])  # re-based to the first request
    assert tr.input_tokens.tolist() == [472, 417] and tr.output_tokens.tolist() == [18, 276]


def test_generic_csv_and_jsonl(tmp_path):
    tr = read_trace(write(tmp_path, "g.csv", "arrival_s,input_tokens,output_tokens,hash_ids\n0.5,10,2,1 2\n0.5,20,3,\n"))
    assert tr.arrival_s.tolist() == [0.5, 0.5] and tr.hash_ids == ((1, 2), ())
    tr2 = read_trace(write(tmp_path, "g.jsonl", '{"arrival_s": 1, "input_tokens": 4, "output_tokens": 2.0}\n\n'
                                               '{"arrival_s": 2.5, "input_tokens": 8, "output_tokens": 1}\n'))
    assert tr2.arrival_s.tolist() == [1.0, 2.5] and tr2.output_tokens.tolist() == [2, 1] and tr2.hash_ids is None


def test_detect_format(tmp_path):
    assert detect_format(write(tmp_path, "a.csv", AZURE)) == "azure"
    assert detect_format(write(tmp_path, "b.csv", BURST)) == "burstgpt"
    with pytest.raises(InputError, match="cannot tell the trace format"):
        detect_format(write(tmp_path, "c.csv", "when,prompt,answer\n1,2,3\n"))
    with pytest.raises(UnknownNameError, match="mooncake"):
        read_trace(write(tmp_path, "d.csv", AZURE), "sharegpt")


# ---------------------------------------------------------------- malformed rows

HEAD = "arrival_s,input_tokens,output_tokens\n"


@pytest.mark.parametrize("body,line,field", [
    ("0,10,2\n1,ten,2\n", 3, "input_tokens"),
    ("0,10,2\n1,-4,2\n", 3, "input_tokens"),
    ("0,0,2\n", 2, "input_tokens"),
    ("0,10,2.5\n", 2, "output_tokens"),
    ("-1,10,2\n", 2, "arrival_s"),
    ("nan,10,2\n", 2, "arrival_s"),
    ("0,10,2\n0,10\n", 3, None),
    ("0,10,2\n5,1,1\n4,1,1\n", 4, "arrival_s"),
])
def test_malformed_csv_rows_name_file_line_field(tmp_path, body, line, field):
    with pytest.raises(InputError) as e:
        read_trace(write(tmp_path, "bad.csv", HEAD + body))
    msg = str(e.value)
    assert f"bad.csv:{line}" in msg
    if field:
        assert f"field {field!r}" in msg


def test_missing_column_and_empty_file(tmp_path):
    with pytest.raises(InputError, match=r"bad\.csv:1: header lacks column\(s\) \['num_decode_tokens'\]"):
        read_trace(write(tmp_path, "bad.csv", "arrived_at,num_prefill_tokens\n0,1\n"), "vidur")
    with pytest.raises(InputError, match="empty"):
        read_trace(write(tmp_path, "e.csv", ""), "csv")


def test_malformed_jsonl_and_missing_key(tmp_path):
    with pytest.raises(InputError, match=r"m\.jsonl:2: not valid JSON"):
        read_trace(write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, '
                                              '"hash_ids": []}\n{oops\n'), "mooncake")
    with pytest.raises(InputError, match=r"m2\.jsonl:1: field 'hash_ids': missing"):
        read_trace(write(tmp_path, "m2.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'),
                   "mooncake")
    with pytest.raises(InputError, match=r"m3\.jsonl:1: field 'input_length'.*not a number"):
        read_trace(write(tmp_path, "m3.jsonl", '{"timestamp": 0, "input_length": true, "output_length": 1, '
                                               '"hash_ids": []}\n'), "mooncake")


def test_out_of_order_sorts_only_when_asked(tmp_path, caplog):
    p = write(tmp_path, "o.csv", HEAD + "0,1,1\n5,2,2\n4,3,3\n")
    with pytest.raises(InputError, match=r"o\.csv:4: field 'arrival_s': time goes backwards \(earlier than line 3\)"):
        read_trace(p)
    with caplog.at_level(logging.WARNING, logger="roofsim.simulator.traces"):
        tr = read_trace(p, sort=True)
    assert "1 row(s) out of time order" in caplog.text
    assert tr.arrival_s.tolist() == [0, 4, 5] and tr.input_tokens.tolist() == [1, 3, 2]


def test_bad_azure_timestamp(tmp_path):
    with pytest.raises(InputError, match=r"x\.csv:3: field 'TIMESTAMP': '2023-13-16 00:00:00'"):
        read_trace(write(tmp_path, "x.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                            "2023-11-16 00:00:00,1,1\n2023-13-16 00:00:00,1,1\n"))


GOOD = st.integers(1, 5000).map(str)
BAD = st.one_of(st.integers(-5, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                st.text(max_size=6), st.sampled_from(["", " 3", "1e3", "2.0", "0", "-0", "1_0", "\x00"]))
CELL = st.one_of(GOOD, GOOD, GOOD, BAD)  # mostly valid, so that valid traces are exercised too
ROW = st.one_of(st.lists(CELL, min_size=3, max_size=3), st.lists(CELL, min_size=3, max_size=3),
                st.lists(CELL, min_size=2, max_size=4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=0, max_size=5))
def test_generic_csv_reader_never_fails_otherwise(rows):
    text = HEAD + "".join(",".join(r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "h.csv"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            tr = read_trace(p, "csv")
        except InputError as e:
            assert "h.csv" in str(e)
            return
    assert isinstance(tr, Trace)
    assert np.all(np.isfinite(tr.arrival_s)) and np.all(np.diff(tr.arrival_s) >= 0)
    assert np.all(tr.input_tokens >= 1) and np.all(tr.output_tokens >= 1)


# ---------------------------------------------------------------- the real shared traces


def test_real_azure_traces(shared_data):
    conv = read_trace(shared_data / "traces/azure_2023/AzureLLMInferenceTrace_conv.csv")
    code = read_trace(shared_data / "traces/azure_2023/AzureLLMInferenceTrace_code.csv")
    assert len(conv) == 19_366 and len(code) == 8_819
    # The real files hold no 0-output rows (checked: min GeneratedTokens is 7 in conv, 6 in code).
    assert conv.output_tokens.min() == 7 and code.output_tokens.min() == 6
    assert conv.mean_input_tokens == pytest.approx(1154.70, abs=0.01)
    assert conv.mean_output_tokens == pytest.approx(211.13, abs=0.01)
    assert code.mean_input_tokens == pytest.approx(2047.85, abs=0.01)
    assert conv.duration_s == pytest.approx(3501.721937, abs=1e-6)
    # Vidur's processed copy of the same trace re-bases to seconds: it must agree row by row.
    vidur = read_trace(shared_data / "traces/vidur_processed/splitwise_conv.csv")
    np.testing.assert_allclose(vidur.arrival_s, conv.arrival_s, atol=2e-6)
    np.testing.assert_array_equal(vidur.input_tokens, conv.input_tokens)


def test_real_mooncake_trace(shared_data):
    tr = read_trace(shared_data / "traces/mooncake/conversation_trace.jsonl")
    assert len(tr) == 12_031
    # CATALOG.md: avg input 12,035, output 343 tokens.
    assert tr.mean_input_tokens == pytest.approx(12_035, rel=0.01)
    assert tr.mean_output_tokens == pytest.approx(343, rel=0.01)
    assert tr.hash_ids is not None and tr.hash_ids[1][:3] == (0, 14, 15)
    # 512-token blocks: one hash id per started block.
    assert all(len(h) == -(-n // 512) for h, n in zip(tr.hash_ids, tr.input_tokens.tolist(), strict=True))


def test_absurd_arrival_time_is_a_row_error_not_an_overflow(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n1e300,10,5\n")
    with pytest.raises(InputError, match=r"t.csv:3: field 'arrival_s'.*beyond 1e\+12 s"):
        read_trace(p)
