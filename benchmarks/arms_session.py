"""The added time per session of running every offline arm beside the headline one.

    python benchmarks/arms_session.py [SESSIONS]          (default: 252)

Runs the offline demo twice in fresh processes, writing the full state: once with a
configuration whose only arm is `rules`, once with the default arms (rules, the
turnover-matched random policy, buy-and-hold SPY, the CAC 40 tracker, the rebalanced
equal weight). Prints the whole-process wall time, the loop's time per session as the
demo reports it, and the difference per session: what the control arms cost.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_ARM = """[arms]
treatment = "rules"
control = "rules"
reference = "rules"

[[arms.arm]]
name = "rules"
policy = "rules"
"""


def measure(sessions: int, config: str | None) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "engine", "demo", "--out", f"{tmp}/out", "--sessions", str(sessions),
                "--end", "2025-12-31", "--no-site"]
        if config is not None:
            Path(tmp, "one.toml").write_text(config)
            argv += ["--config", f"{tmp}/one.toml"]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        m = re.search(r"Arms: (\d+) ms per session for (\d+) arms", proc.stdout)
        return wall, float(m[1]), int(m[2])


def main() -> None:
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 252
    w1, ms1, n1 = measure(sessions, ONE_ARM)
    wn, msn, nn = measure(sessions, None)
    print(f"demo, {sessions} sessions, full state written")
    print(f"{'arms':>5} {'wall s':>8} {'loop ms/session':>16}")
    print(f"{n1:>5} {w1:>8.2f} {ms1:>16.0f}")
    print(f"{nn:>5} {wn:>8.2f} {msn:>16.0f}")
    print(f"added by {nn - n1} arms: {msn - ms1:.0f} ms per session in the loop, "
          f"{(wn - w1) / sessions * 1000:.0f} ms per session for the whole process")


if __name__ == "__main__":
    main()
