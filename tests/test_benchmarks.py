"""Every script in benchmarks/ still imports and parses its arguments: a script that a change
elsewhere broke (a renamed module, a new required field) fails here, not in the next session
that needs its figures. Import and `--help` only; nothing is measured."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_a_benchmark_script_answers_help(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_the_gpu_check_dry_run_passes_every_check_on_cpu(tmp_path: Path) -> None:
    """`gpu_check.sh --dry-run` runs the GPU check's step, host-sync, pseudo-labelling and bench
    code on CPU at tiny sizes (the paper-size teacher's architecture at a small input), so the
    script that a lent GPU runs once is known to work before the GPU is there."""
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**env, "GPU_CHECK_LOGS": str(tmp_path), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert (tmp_path / "summary.txt").read_text().splitlines()[0].startswith("steps: rc 0,")
    steps = (tmp_path / "steps.log").read_text()
    for row in ("stage-1 teacher step, fp32", "student step, batch 2, bf16-mixed", "floor"):
        assert row in steps, row
    # The host-sync column: the student's step makes a few dozen, not one per pixel.
    student = next(line for line in steps.splitlines() if line.startswith("| student step"))
    assert 0 < int(student.split("|")[4]) < 100
    assert "student (tiny), PyTorch eager" in (tmp_path / "bench.log").read_text()
