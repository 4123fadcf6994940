"""Input files: every record knows its file and location; bad JSON lines become error records."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_preprocess.records import InputFileError, RecordReader, reason_category


def test_jsonl_lines_are_one_based_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n{"a": "x\u2028y"}\r\n{"a": \n', encoding="utf-8")
    reader = RecordReader(path)
    records = list(reader)
    assert len(reader) == 3
    assert [(r.location, r.data) for r in records[:2]] == [("line 1", {"a": 1}), ("line 3", {"a": "x\u2028y"})]
    bad = records[2]
    assert bad.where() == f"{path}:line 4"
    assert bad.error.startswith("invalid JSON: column")
    assert bad.raw == '{"a": '


def test_json_array_and_data_wrapper(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"a": 1}, {"a": 2}]), encoding="utf-8")
    assert [(r.location, r.data) for r in RecordReader(path)] == [("index 0", {"a": 1}), ("index 1", {"a": 2})]
    path.write_text(json.dumps({"data": [{"a": 3}]}), encoding="utf-8")
    assert [r.data for r in RecordReader(path)] == [{"a": 3}]


def test_parquet_rows_are_zero_based(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"q": "é", "n": [1, 2]}, {"q": "b", "n": []}]), path)
    reader = RecordReader(path)
    assert len(reader) == 2
    assert [(r.location, r.data) for r in reader] == [
        ("row 0", {"q": "é", "n": [1, 2]}),
        ("row 1", {"q": "b", "n": []}),
    ]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("in.csv", "a,b", "unknown input suffix '.csv'"),
        ("in.json", '{"a": 1}', "must hold an array of records"),
        ("in.json", "[1, 2", "invalid JSON at line 1"),
        ("in.parquet", "not parquet", "cannot read parquet"),
    ],
)
def test_unusable_files_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError, match=match) as info:
        RecordReader(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        RecordReader(tmp_path / "absent.jsonl")


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("unknown tool: 'python' in action 2", "unknown tool"),
        ("missing answer (field 'answer')", "missing answer"),
        ("unparseable tool call (message 1, tool call 0): bad", "unparseable tool call"),
    ],
)
def test_reason_category(reason, category):
    assert reason_category(reason) == category


def test_invalid_utf8_rejects_only_its_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n{"a": 3}\r\n')
    records = list(RecordReader(path))
    assert [r.data for r in records] == [{"a": 1}, None, {"a": 3}]
    assert records[1].where() == f"{path}:line 2"
    assert records[1].error == "invalid UTF-8: at byte 11 of the line: invalid continuation byte"
    assert records[1].raw == '{"a": "caf\\xe9"}'


def test_invalid_utf8_in_a_json_array_names_the_file(tmp_path):
    path = tmp_path / "in.json"
    path.write_bytes(b'[{"a": "caf\xe9"}]')
    with pytest.raises(InputFileError, match=r"in\.json: invalid UTF-8 at byte 12"):
        RecordReader(path)
