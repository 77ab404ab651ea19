"""bench/gpu_check.sh, the one-shot GPU check, on the CPU: the parts of its logic that can go
wrong before any GPU is reached (executable bit, toolkit discovery, budget skips, the summary,
what it leaves in OUTDIR). CI also runs its full dry run (.ci/run)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="a bash script for Linux")


def dry_run(out: Path, budget: int, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_BUDGET": str(budget), **env}
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_script_is_executable_in_git():
    # The device machine runs a fresh checkout: the mode git records is what counts.
    assert os.stat(SCRIPT).st_mode & stat.S_IXUSR
    ls = subprocess.run(["git", "ls-files", "-s", str(SCRIPT)], cwd=ROOT, capture_output=True,
                        text=True)
    if ls.returncode != 0 or not ls.stdout:
        pytest.skip("not a git checkout")
    assert ls.stdout.split()[0] == "100755", ls.stdout


def test_budget_skips_are_skipped_not_failed(tmp_path):
    # 16 s: the environment step runs, and every later step finds under 15 s left.
    r = dry_run(tmp_path, 16)
    summary = (tmp_path / "summary.md").read_text()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| tests-cuda | SKIPPED (time budget spent" in summary, summary
    assert "FAILED" not in summary, summary
    assert "**No step failed; not run (the time budget or a missing build):" in summary, summary
    # at most 8 plain files, no folder: what the device tool brings back
    entries = list(tmp_path.iterdir())
    assert len(entries) <= 8 and all(e.is_file() for e in entries), entries


def test_cuda_home_is_honoured(tmp_path):
    fake = tmp_path / "toolkit"
    (fake / "bin").mkdir(parents=True)
    nvcc = fake / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'fake nvcc, release 99.9'\n")
    nvcc.chmod(0o755)
    out = tmp_path / "out"
    r = dry_run(out, 16, CUDA_HOME=str(fake))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"toolkit: {fake};" in (out / "summary.md").read_text()
    env_txt = (out / "env.txt").read_text()
    assert f"{fake}/bin/nvcc" in env_txt and "fake nvcc, release 99.9" in env_txt, env_txt
