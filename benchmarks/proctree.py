"""Run a command and watch its process tree: peak RSS of the whole tree and CPU time of the
processes a benchmark counts as workers (shared by the ingestion benchmarks)."""
from __future__ import annotations

import json
import subprocess
import time
from typing import Callable

import psutil


def run_watched(cmd: list[str], is_worker: Callable[[psutil.Process, int], bool], poll_s: float = 0.05
                ) -> tuple[dict, int, float]:
    """Run ``cmd`` (which prints a JSON line last) and return that JSON, the peak RSS in bytes of
    the process tree (summed over its processes at each poll), and the CPU seconds of the processes
    ``is_worker(process, top_pid)`` accepts, each as last seen. Raises if ``cmd`` fails."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    top = psutil.Process(proc.pid)
    peak, cpu = 0, {}
    while proc.poll() is None:
        try:
            tree = [top, *top.children(recursive=True)]
        except psutil.Error:
            tree = []
        rss = 0
        for p in tree:
            try:
                rss += p.memory_info().rss
                if is_worker(p, proc.pid):
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
            except psutil.Error:  # the process ended between the listing and the read
                pass
        peak = max(peak, rss)
        time.sleep(poll_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode})")
    return json.loads(proc.stdout.read().strip().splitlines()[-1]), peak, sum(cpu.values())
