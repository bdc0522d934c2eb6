"""The README's benchmark commands still run (tiny sizes: this checks they work, not
their figures, which belong to a quiet machine and a person reading them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

# script: (arguments for a toy run, what its report must say)
QUICK = {
    "bench_guard.py": (["--rounds", "2", "--calls", "20"], ["guarded/plain CPU median ratio", "1 GetBucketEncryption"]),
    "bench_envelope.py": (["--mib", "2", "--repeat", "1", "--no-official"], ["% of raw"]),
    "bench_envelope_io.py": (
        ["--sizes", "1", "--rounds", "1", "--no-official", "--rss-mib", "1", "--keyring", "raw-aes"],
        ["get         1", "sse_guard keyring raw-aes", "Peak RSS of one 1 MiB operation"],
    ),
    "bench_scan.py": (
        ["--objects", "60", "--sequential-objects", "5", "--latency-ms", "1", "--rows", "2000", "--small-rows", "200"],
        ["scan ratio:", "rows/s", "peak traced memory"],
    ),
}


def test_every_benchmark_has_a_quick_run_here() -> None:
    assert sorted(p.name for p in BENCH.glob("bench_*.py")) == sorted(QUICK)


@pytest.mark.parametrize("script", sorted(QUICK))
def test_a_benchmark_runs_and_prints_its_report(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *QUICK[script][0]],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for expected in QUICK[script][1]:
        assert expected in result.stdout, result.stdout[-2000:]
