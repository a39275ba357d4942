"""Wall time of README's main command, `vist3a generate PROMPT` with the default pairing, in fresh processes.

Each row is a new process (process start, imports and model loading included), offline; the ratio is against
`vist3a --version` (process start and the CLI's imports alone), measured in the same run. The issue's target for the
first row is 30 s on 2 CPU cores.

    python benchmarks/bench_default_generate.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROMPT = "a red sphere next to a blue cube"
CASES = {
    "vist3a --version": ["--version"],
    "generate (60-frame orbit)": ["generate", PROMPT],
    "generate --render-frames 1": ["generate", PROMPT, "--render-frames", "1"],
}


def wall_time(args: list[str], folder: Path) -> float:
    """Seconds for one `vist3a ARGS` process started in ``folder``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "vist3a"), *args], cwd=folder, env=env, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print("| command | run 1 s | median s | ratio to `vist3a --version` |")
    print("|---|---|---|---|")
    baseline = None
    with tempfile.TemporaryDirectory() as scratch:
        for name, argv in CASES.items():
            times = [wall_time(argv, Path(scratch)) for _ in range(args.repeats)]
            median = sorted(times)[len(times) // 2]
            baseline = baseline or median
            print(f"| {name} | {times[0]:.1f} | {median:.1f} | {median / baseline:.2f} |", flush=True)


if __name__ == "__main__":
    main()
