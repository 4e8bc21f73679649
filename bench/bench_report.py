"""Rewrites one named section of docs/BENCHMARKS.md, keeping the others."""
import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

HEADER = """# Benchmarks

Every figure is measured against a baseline taken in the same run on the same
machine (a ratio or a rate), so the numbers stay comparable across machines.
`make bench` reruns every benchmark in `bench/` and rewrites its section here.
"""


def machine():
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, {ffmpeg}"


def write_section(path: Path, title: str, body: str):
    text = path.read_text() if path.exists() else HEADER
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = f"## {title}\n\n_Measured {stamp} on {machine()}._\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
