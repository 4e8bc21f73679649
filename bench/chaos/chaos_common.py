"""Helpers shared by the chaos soak and the load run: the reliability report, s3rver, /proc scans.

The processes themselves are bench/bench_common.py's Services; s3rver is the
integration harness's launcher (tests/integration/harness/s3server.py).
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import bench_common as bc  # noqa: E402
import bench_report  # noqa: E402
from harness.s3server import S3rver, worker_env  # noqa: E402,F401

RELIABILITY = ROOT / "docs" / "RELIABILITY.md"
RELIABILITY_HEADER = "# Reliability\n"


def write_reliability_section(path, title, body):
    """Rewrites one "## title" section of docs/RELIABILITY.md, keeping the others (and its "# Reliability" header)."""
    path = Path(path)
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(RELIABILITY_HEADER)
    bench_report.write_section(path, title, body)


def use_bin_dir(bin_dir):
    """Points bench_common at the programs in `bin_dir` (a Release build's bin/, say)."""
    if bin_dir:
        bc.BIN = Path(bin_dir).resolve()


def process_start_ticks(pid):
    """The start time of `pid` in clock ticks since boot (tells a pid from a later reuse); None when gone."""
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def find_processes(names, needles):
    """[(pid, ppid, name, cmdline)] of every process called one of `names` whose command line mentions
    one of `needles` (paths)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                name = f.read().strip()
            if name not in names:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if any(str(n) in cmdline for n in needles):
            found.append((int(entry), ppid, name, cmdline))
    return found


def dir_entries(path):
    try:
        return sorted(p.name for p in Path(path).iterdir())
    except FileNotFoundError:
        return []
