"""Stopping `showo` from outside: Ctrl-C (SIGINT) and SIGTERM end the real process with one line, exit 130 / 143,
no traceback, no output files, no temporary files and no child process left running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="watches child processes through /proc")


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    # Ctrl-C as a terminal gives it, even where pytest was started with SIGINT ignored (`make test &`), which
    # the child would inherit (and rightly keep ignoring)
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    return subprocess.Popen([sys.executable, "-m", "showo.cli.main", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, preexec_fn=restore)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stopped(process: subprocess.Popen, sig: int) -> tuple[int, str]:
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_eval_stopped_leaves_nothing(tmp_path, sig, code, word):
    process = _start(tmp_path, "eval", "--model", "tiny-random", "--samples", "500", "--tasks", "tokenizer",
                     "--json", "m.json", "--out", "report")
    ours = lambda: list((tmp_path / "tmp").glob("tmp*"))  # noqa: E731  (tempfile's names; libraries have others)
    _wait_for(lambda: ours() or process.poll() is not None, "the evaluation to start")
    assert process.poll() is None
    returncode, err = _stopped(process, sig)
    assert returncode == code and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("showo: error:")] == [f"showo: error: {word}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"] and ours() == []


def test_bench_terminated_kills_its_memory_probe(tmp_path):
    process = _start(tmp_path, "bench", "--tiny", "--only", "memory", "--json", "out/b.json")
    _wait_for(lambda: _children(process.pid) or process.poll() is not None, "the memory probe to start")
    children = _children(process.pid)
    assert process.poll() is None and children
    returncode, err = _stopped(process, signal.SIGTERM)
    assert returncode == 143 and "Traceback" not in err, err
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no --json directory made before a result


def test_stdout_closed_early_ends_quietly_with_141(tmp_path):
    """`showo write ... | head -c1`: the reader goes away; the command stops without a traceback, with the shell's
    code for SIGPIPE (141), not 0 as if it had written everything."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "showo.cli.main", "write", "hi", "--model", "tiny-random",
                                "--device", "cpu", "--max-new-tokens", "20", "--stream", "--out", str(tmp_path / "o")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    process.stdout.close()  # before it writes a byte
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141 and "Traceback" not in err, err
