"""B7: scale, 16 to 256 workers, ours vs the upstream `dask-mpi` CLI, in one run that stops by itself.

Each run is B1's (benchmarks/b1_cluster_ready.py, imported, not copied): ours is `mpirun -np
N+2 dask-mpi-lx launch` (rank 0 a command, rank 1 a TLS scheduler, Nanny workers), upstream
`mpirun -np N+1 dask-mpi` (rank 0 the scheduler, Nanny workers, plain TCP); a client started
with the job times the moment it sees N workers ("ready"); "shutdown" is from then until
mpirun has exited; error lines are B1's count over everything the run printed. Sizes run in
ascending order, ours and upstream alternating.

Added here: the memory of every rank, sampled once, when the client sees all N workers,
before anything is shut down. Every process below this one (mpirun's tree) is read with
psutil: its unique memory (USS), or its resident memory (RSS) where USS may not be read. A
rank counts with the processes it started (a Nanny's worker process; rank 0's command): a
rank's first process is the topmost one carrying its `OMPI_COMM_WORLD_RANK` (or
`PMIX_RANK`). Reported: the median and largest MB per worker rank, the scheduler rank's MB,
mpirun's own processes. The sampling is B1's ``at_ready`` step (after the client saw N
workers, before any shutdown), and its duration is taken out of the shutdown time. Of what
the job printed, the first error lines go into the result, the whole output into --log-dir.

The run keeps to a wall budget (--budget-s): before each size it estimates that size's time
from the previous size's, scaled by the worker ratio (x1.25), and skips it ("skipped:
budget") when that exceeds what is left; at the budget, whatever still runs is killed and
recorded as stopped.

Run: python benchmarks/b7_scale.py [--workers 16 32 64 128 256] [--runs 1] [--budget-s 420]
     [--log-dir DIR] [--no-save]
On a 16-core machine without network: bash benchmarks/device/run_b7.sh (see benchmarks/device/).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import b1_cluster_ready as b1
import psutil
from common import ERROR_LINE, emit, median

TARGET = "ours <= 1.0x upstream CLI at 256 workers; zero error lines"
RANK_ENV = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
GROWTH = 1.25  # margin on the estimate of the next size's time
MIN_LEFT_S = 20.0  # never start a size with less than this left
LOG_CAP = 1 << 20  # bytes kept of one run's output in --log-dir (head and tail)
SIDES = {"ours": (b1.ours, 1, 2), "upstream": (b1.upstream, 0, 1)}  # run, scheduler rank, first worker


class Budget:
    """The wall budget; when it runs out, every process below this one is killed."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.expired = threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _expire(self) -> None:
        self.expired.set()
        print(f"B7: budget spent after {self.elapsed():.0f}s: stopping the running job",
              file=sys.stderr, flush=True)
        kill_tree()

    def cancel(self) -> None:
        self._timer.cancel()


def kill_tree() -> None:
    """SIGKILL every process below this one (mpirun, its ranks and what they started)."""
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)


def _mb(p: psutil.Process) -> tuple[float, str]:
    """The process's unique memory in MB (2**20 bytes), or its resident memory where USS
    may not be read; and which of the two it is."""
    try:
        return p.memory_full_info().uss / 2**20, "uss"
    except psutil.AccessDenied:
        return p.memory_info().rss / 2**20, "rss"


def _rank(p: psutil.Process) -> int | None:
    """The MPI rank whose environment the process started with, if any."""
    try:
        env = p.environ()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for key in RANK_ENV:
        if env.get(key, "").isdigit():
            return int(env[key])
    return None


def rank_memory() -> dict:
    """MB of every rank below this process (with the processes it started) and of the rest
    (mpirun and its helpers)."""
    procs = psutil.Process().children(recursive=True)
    rank_of = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            rank_of[p.pid] = _rank(p)
    ranks: dict[int, dict] = {}
    counted: set[int] = set()
    kinds: set[str] = set()
    for p in procs:
        rank = rank_of.get(p.pid)
        try:
            if rank is None or rank_of.get(p.ppid()) == rank:
                continue  # not a rank's first process
            group = [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        entry = ranks.setdefault(rank, {"mb": 0.0, "processes": 0})
        for q in group:
            if q.pid in counted:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                mb, kind = _mb(q)
                counted.add(q.pid)
                kinds.add(kind)
                entry["mb"] += mb
                entry["processes"] += 1
    launcher = 0.0
    for p in procs:
        if p.pid not in counted:
            with contextlib.suppress(psutil.NoSuchProcess):
                mb, kind = _mb(p)
                kinds.add(kind)
                launcher += mb
    return {"kind": "+".join(sorted(kinds)) or None, "ranks": ranks, "launcher_mb": launcher}


def _capped(text: str) -> str:
    """``text``, or its head and tail when it is longer than LOG_CAP."""
    if len(text) <= LOG_CAP:
        return text
    head = LOG_CAP // 5
    return f"{text[:head]}\n[... {len(text) - LOG_CAP} characters left out ...]\n{text[-(LOG_CAP - head):]}"


def memory_summary(sample: dict | None, scheduler_rank: int, first_worker: int) -> dict | None:
    """What the report shows of one sample: MB per worker rank, the scheduler's, the rest."""
    if not sample:
        return None
    ranks = sample["ranks"]
    workers = [g["mb"] for r, g in ranks.items() if r >= first_worker]
    sched = ranks.get(scheduler_rank)
    out = {"kind": sample["kind"],
           "worker_rank_mb": None if not workers else round(median(workers), 1),
           "worker_rank_mb_max": None if not workers else round(max(workers), 1),
           "worker_ranks": len(workers),
           "processes_per_worker_rank": median([g["processes"] for r, g in ranks.items()
                                                if r >= first_worker]),
           "scheduler_mb": None if not sched else round(sched["mb"], 1),
           "launcher_mb": round(sample["launcher_mb"], 1),
           "total_mb": round(sum(g["mb"] for g in ranks.values()) + sample["launcher_mb"], 1)}
    if first_worker == 2 and 0 in ranks:  # ours: rank 0 runs the command
        out["command_rank_mb"] = round(ranks[0]["mb"], 1)
    return out


def run_once(side: str, n: int, i: int, budget: Budget, log_dir: Path | None) -> dict:
    """One B1 run of ``side`` with N=``n``; never raises (a failure is recorded)."""
    run, scheduler_rank, first_worker = SIDES[side]
    sampled: dict = {}

    def sample() -> None:  # with every worker connected, before anything is shut down
        t = time.monotonic()
        try:
            sampled["memory"] = rank_memory()
        except psutil.Error as e:  # no sample is no reason to fail the run
            sampled["memory_error"] = f"{type(e).__name__}: {e}"
        sampled["sample_s"] = time.monotonic() - t

    b1.WAIT_S = max(10.0, budget.left())  # B1's waits end by the budget
    t = time.monotonic()
    try:
        r = run(n, at_ready=sample)
    except Exception as e:  # a failed run is a result too
        r = {"error": f"{type(e).__name__}: {e}"}
    if budget.expired.is_set():  # killed while it ran: what it measured does not count
        r = {"error": "stopped at the budget" + (f": {r['error']}" if "error" in r else "")}
    r["wall_s"] = round(time.monotonic() - t, 3)
    sample_s = sampled.get("sample_s", 0.0)
    if "ready_s" in r:
        r["ready_s"] = round(r["ready_s"], 3)
        r["shutdown_s"] = round(r["shutdown_s"] - sample_s, 3)
    r["sample_s"] = round(sample_s, 3)
    r["memory"] = memory_summary(sampled.get("memory"), scheduler_rank, first_worker)
    if "memory_error" in sampled:
        r["memory_error"] = sampled["memory_error"]
    out, err = r.pop("stdout", ""), r.pop("stderr", "")
    r["error_examples"] = [line[:300] for line in (out + err).splitlines()
                           if ERROR_LINE.search(line)][:5]
    if log_dir:
        text = f"=== stdout ===\n{out}\n=== stderr ===\n{err}\n"
        if "error" in r:
            text += f"=== failure ===\n{r['error']}\n"
        (log_dir / f"n{n:03d}-{side}-{i}.log").write_text(_capped(text))
    if "error" in r and len(r["error"]) > 1500:  # what failed, and the end of the job's stderr
        r["error"] = f"{r['error'][:400]} [...] {r['error'][-1100:]}"
    return r


def side_summary(rs: list[dict]) -> dict:
    """Medians over the runs of one side that succeeded; the failures' messages."""
    ok = [r for r in rs if "error" not in r]
    mems = [r["memory"] for r in ok if r.get("memory")]
    memory = None
    if mems:
        memory = {"kind": "+".join(sorted({m["kind"] for m in mems if m["kind"]})) or None}
        for key in mems[0]:
            if key != "kind":
                vals = [m[key] for m in mems if m.get(key) is not None]
                memory[key] = round(median(vals), 1) if vals else None
    return {"ready_s": median([r["ready_s"] for r in ok]),
            "shutdown_s": median([r["shutdown_s"] for r in ok]),
            "error_lines": max((r["error_lines"] for r in ok), default=None),
            "rc": sorted({r["rc"] for r in ok}),
            "memory": memory,
            "error_examples": next((r["error_examples"] for r in ok if r["error_examples"]), []),
            "failures": [r["error"] for r in rs if "error" in r]}


def measure_size(n: int, runs: int, budget: Budget, log_dir: Path | None) -> dict:
    """All runs of one size, ours and upstream alternating."""
    got: dict[str, list[dict]] = {side: [] for side in SIDES}
    for i in range(runs):
        for side in SIDES:
            got[side].append({"error": "not run: the budget was spent"} if budget.expired.is_set()
                             else run_once(side, n, i, budget, log_dir))
    row = {"workers": n, "runs": runs, **{side: side_summary(rs) for side, rs in got.items()}}
    o, u = row["ours"]["ready_s"], row["upstream"]["ready_s"]
    row["ratio"] = round(o / u, 3) if o and u else None
    return row


def mpi_info() -> dict:
    """Which mpirun ran the jobs: its path and the first line of `mpirun --version`."""
    path = shutil.which("mpirun")
    try:
        out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return {"mpirun": path, "mpi": out.splitlines()[0] if out else None}


def usable_cpus() -> float:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota if there is one."""
    n: float = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, int(quota) / int(period))
    return int(n) if n == int(n) else round(n, 1)


def limits() -> dict:
    """Limits of this machine that large jobs may meet."""
    shm = Path("/dev/shm")
    def soft(which: int) -> int | None:
        n = resource.getrlimit(which)[0]
        return None if n == resource.RLIM_INFINITY else n

    found = {"open_files": soft(resource.RLIMIT_NOFILE), "processes": soft(resource.RLIMIT_NPROC),
             "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
             "dev_shm_mb": round(shutil.disk_usage(shm).total / 2**20) if shm.exists() else None}
    for pids in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
        with contextlib.suppress(OSError):
            found["cgroup_pids_max"] = Path(pids).read_text().strip()
            break
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall budget of the whole run; sizes that would not fit are skipped")
    ap.add_argument("--log-dir", type=Path, default=None,
                    help="keep each run's output there (n<N>-<side>-<run>.log)")
    ap.add_argument("--no-save", action="store_true",
                    help="print the JSON line only; keep benchmarks/results as it is")
    args = ap.parse_args()
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        dashboard = f"bokeh {metadata.version('bokeh')}"
    except metadata.PackageNotFoundError:
        dashboard = None  # the schedulers serve Dask's page that asks for bokeh
    budget = Budget(args.budget_s)
    rows: list[dict] = []
    prev: tuple[int, float] | None = None  # (workers, seconds) of the last size run
    try:
        for n in sorted(set(args.workers)):
            left = budget.left()
            estimate = prev[1] * n / prev[0] * GROWTH if prev else None
            if budget.expired.is_set() or left < MIN_LEFT_S or (estimate and estimate > left):
                rows.append({"workers": n, "skipped": "budget", "left_s": round(max(left, 0), 1),
                             "estimate_s": None if estimate is None else round(estimate, 1)})
                print(f"B7: N={n} skipped: budget ({max(left, 0):.0f}s left, estimated "
                      f"{'?' if estimate is None else f'{estimate:.0f}'}s)", file=sys.stderr,
                      flush=True)
                continue
            t = time.monotonic()
            row = measure_size(n, args.runs, budget, args.log_dir)
            row["duration_s"] = round(time.monotonic() - t, 1)
            prev = (n, row["duration_s"])
            rows.append(row)
            print(f"B7: {row}", file=sys.stderr, flush=True)
    finally:
        budget.cancel()
    emit({"benchmark": "B7 scale", "timed_by": "client", "rows": rows, "runs": args.runs,
          "budget_s": args.budget_s, "elapsed_s": round(budget.elapsed(), 1),
          "stopped_at_budget": budget.expired.is_set(), "dashboard": dashboard,
          "memory": "USS (RSS where USS may not be read), MB = 2**20 bytes; a rank with the "
                    "processes it started; sampled when the client sees all workers",
          "limits": limits(), "cpus": usable_cpus(), **mpi_info(),
          "target": TARGET}, "b7_scale", save=not args.no_save)


if __name__ == "__main__":
    main()
