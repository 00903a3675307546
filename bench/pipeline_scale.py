"""Main job wall time, throughput and peak memory at scale 1 and 100 (run: python bench/pipeline_scale.py).

Each case runs `python -m scalable_pipeline run` in a fresh DAGSTER_HOME and samples the memory of the
whole process tree (the run, the forkserver and every step process) every 50 ms.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time

import psutil

CASES = [
    ("scale 1, in process", ["--scale", "1"]),
    ("scale 1, multiprocess", ["--scale", "1", "--multiprocess"]),
    ("scale 100, in process", ["--scale", "100"]),
    ("scale 100, multiprocess", ["--scale", "100", "--multiprocess"]),
]


def sample_tree(root: psutil.Process, peaks: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            processes = [root, *root.children(recursive=True)]
            rss = [p.memory_info().rss for p in processes if p.is_running()]
        except psutil.Error:
            rss = []
        if rss:
            peaks["tree"] = max(peaks.get("tree", 0), sum(rss))
            peaks["process"] = max(peaks.get("process", 0), max(rss))
        time.sleep(0.05)


def run_case(extra_args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**psutil.Process().environ(), "DAGSTER_HOME": home}
        env.pop("SCALABLE_PIPELINE_DATA_DIR", None)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "scalable_pipeline", "run", *extra_args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        peaks, stop = {}, threading.Event()
        sampler = threading.Thread(target=sample_tree, args=(psutil.Process(process.pid), peaks, stop))
        sampler.start()
        output = process.communicate()[0]
        stop.set()
        sampler.join()
        wall = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"run failed:\n{output}")
    records = int(re.search(r"records in:\s+(\d+)", output).group(1))
    chunks = re.search(r"chunks:\s+(\d+)", output).group(1)
    job_seconds = float(re.search(r"in ([\d.]+) s", output).group(1))
    return {"records": records, "chunks": chunks, "wall": wall, "job": job_seconds, **peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="run only cases whose name contains this text")
    args = parser.parse_args()
    print(
        f"{'case':26} {'records':>9} {'chunks':>6} {'job s':>7} {'wall s':>7} {'rec/s':>9} {'peak proc MB':>12} {'peak tree MB':>12}"
    )
    for name, extra in CASES:
        if args.only and args.only not in name:
            continue
        r = run_case(extra)
        print(
            f"{name:26} {r['records']:>9} {r['chunks']:>6} {r['job']:>7.2f} {r['wall']:>7.2f} {r['records'] / r['job']:>9,.0f}"
            f" {r['process'] / 2**20:>12,.0f} {r['tree'] / 2**20:>12,.0f}"
        )


if __name__ == "__main__":
    main()
