"""The CLI as users run it: ``python -m data_preprocess`` and the ``actguide-preprocess`` console script."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_preprocess.cli import build_parser, main

sys.path.insert(0, str(Path(__file__).parent))
from preprocess_samples import ACTIONS, openai_record


def test_python_dash_m_runs_convert(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(openai_record([list(ACTIONS[:2])]), ensure_ascii=False) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "data_preprocess", "convert", str(src), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "format openai (auto-detected)" in proc.stderr
    assert "accepted 1, rejected 0" in proc.stdout
    assert (tmp_path / "out" / "train.parquet").is_file()


CONSOLE_SCRIPT = Path(sys.executable).parent / "actguide-preprocess"


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason="package not pip-installed into this interpreter's env")
def test_console_script_reports_bad_input_with_exit_1(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("{not json\n", encoding="utf-8")
    proc = subprocess.run(
        [str(CONSOLE_SCRIPT), "convert", str(src), "-o", str(tmp_path / "out"), "--format", "openai"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"error: {src}:line 1: invalid JSON" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_input_file_is_exit_1(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "out")]) == 1
    assert "absent.jsonl: no such file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["convert", "x.jsonl"], "the following arguments are required: --out/-o/--output-dir"),
        (["convert", "x.jsonl", "-o", "o", "--val-ratio", "1"], "must be in [0, 1)"),
        (["convert", "x.jsonl", "-o", "o", "--format", "csv"], "invalid choice: 'csv'"),
        (["convert", "x.jsonl", "-o", "o", "--tools", ","], "expected a comma-separated list"),
    ],
)
def test_bad_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_tool_map_is_reported(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(openai_record([[ACTIONS[0]]])) + "\n", encoding="utf-8")
    assert main(["convert", str(src), "-o", str(tmp_path / "o"), "--tool-map", "search"]) == 1
    assert "--tool-map entry 'search' must look like source=target" in capsys.readouterr().err


def test_missing_system_prompt_file_fails_before_parsing(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(openai_record([[ACTIONS[0]]])) + "\n", encoding="utf-8")
    argv = ["convert", str(src), "-o", str(tmp_path / "o"), "--system-prompt-file", str(tmp_path / "none.txt")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "none.txt" in err and "format openai" not in err
    assert not (tmp_path / "o").exists()


def _start_convert(src: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """A convert run in a child process, returned once its staging directory exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_preprocess", "convert", str(src), "-o", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        staging = list(out.parent.glob(f".{out.name}.staging-*"))
        if staging:
            return proc, staging[0]
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the convert run never staged its outputs")


@pytest.fixture
def large_input(tmp_path):
    """Enough records that a run lasts seconds, so it can be interrupted halfway."""
    record = openai_record([list(ACTIONS[:2])])
    lines = (json.dumps({**record, "id": i, "question": f"q{i}"}, ensure_ascii=False) for i in range(5000))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def test_sigterm_leaves_no_temp_files_and_the_old_outputs(tmp_path, large_input):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.parquet").write_text("old")
    proc, staging = _start_convert(large_input, out)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]
    assert [(p.name, p.read_text()) for p in out.iterdir()] == [("train.parquet", "old")]


def test_next_run_removes_what_a_killed_run_left(tmp_path, large_input, capsys):
    out = tmp_path / "out"
    proc, staging = _start_convert(large_input, out)
    proc.kill()
    proc.wait(timeout=60)
    assert staging.exists()  # SIGKILL cannot be caught
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps(openai_record([list(ACTIONS[:2])]), ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["convert", str(small), "-o", str(out)]) == 0
    assert f"removed {staging}, left by an interrupted run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out", "small.jsonl"]


@pytest.mark.parametrize("command", [["convert", "x.jsonl"], ["attach", "x.parquet", "--actions", "t.jsonl",
                                     "--tool-config", "t.yaml"], ["build-offline"], ["build-barrier"]])  # fmt: skip
@pytest.mark.parametrize("flag", ["--out", "-o", "--output-dir"])
def test_every_command_writes_to_out_and_accepts_the_former_spellings(command, flag):
    assert build_parser().parse_args([*command, flag, "DIR"]).out == Path("DIR")
