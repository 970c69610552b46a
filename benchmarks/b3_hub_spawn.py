"""B3: hub spawn request to server ready, plain batchspawner (Dask off, 1 core) vs with the
launcher (4 and 8 ranks), through the REST API of the local stack (etc/local/stack.py up).
The variants alternate. For the launcher's runs, the Dask side's cost is timed too: from
the server being ready to the last worker rank reporting its worker active (from the job's
log, written on this machine, so one clock).

Run: python benchmarks/b3_hub_spawn.py [--runs 7] [--user alice]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import emit, median

HUB = os.environ.get("DASK_MPI_LX_HUB_URL", "http://127.0.0.1:8000")
STATE = os.environ.get("DASK_MPI_LX_STATE", "/srv/dask-mpi-lx")


def api(method: str, path: str, token: str, data: dict | None = None) -> dict:
    req = urllib.request.Request(HUB + path, method=method,
                                 data=json.dumps(data).encode() if data is not None else None)
    req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.code >= 400:
            raise RuntimeError(f"{method} {path}: {e.code} {body[:300]!r}") from None
    return json.loads(body) if body else {}


def server(user: str, token: str) -> dict | None:
    return api("GET", f"/hub/api/users/{user}", token)["servers"].get("")


def stop(user: str, token: str) -> None:
    if server(user, token):
        api("DELETE", f"/hub/api/users/{user}/server", token)
    while server(user, token):
        time.sleep(0.2)


ACTIVE = re.compile(r"^(\S+ \S+) dask-mpi-lx\[rank \d+/(\d+) scheduler .* worker rank \d+ is active")


def _newest_log(user: str, after: float) -> str | None:
    logs = [p for p in glob.glob(os.path.expanduser(f"~{user}/dask-mpi-lx-*.log"))
            if os.path.getmtime(p) >= after]
    return max(logs, key=os.path.getmtime) if logs else None


STARTED = re.compile(r"starting the command ([\d.]+)s after launch")
LISTENS = re.compile(r"the command listens on its port after ([\d.]+)s")


def job_timings(user: str, spawned: float, ready: float, ranks: int) -> dict[str, float]:
    """From the job's log: seconds from ``ready`` (wall clock) until its last worker is
    active (every rank but Jupyter's and the scheduler's), from launch until the launcher
    started Jupyter (every rank has started MPI and said hello by then), and from then
    until Jupyter listened."""
    deadline = time.time() + 120
    while time.time() < deadline:
        path = _newest_log(user, spawned)
        text = Path(path).read_text() if path else ""
        stamps = [m.group(1) for m in map(ACTIVE.match, text.splitlines()) if m]
        if len(stamps) >= ranks - 2:
            last = max(datetime.datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t in stamps)
            started, listens = STARTED.search(text), LISTENS.search(text)
            return {"workers_after_ready_s": last.timestamp() - ready,
                    "command_started_s": float(started.group(1)) if started else None,
                    "command_listens_s": float(listens.group(1)) if listens else None}
        time.sleep(0.2)
    raise RuntimeError(f"the job's log did not show {ranks - 2} active workers within 120 s")


def spawn(user: str, token: str, options: dict) -> tuple[float, dict | None]:
    """Seconds from the spawn request until the hub says ready; for the launcher's runs,
    also the job's own timings (`job_timings`)."""
    stop(user, token)
    time.sleep(1)
    spawned = time.time()
    t0 = time.monotonic()
    api("POST", f"/hub/api/users/{user}/server", token, options)
    while True:
        s = server(user, token)
        if s and s.get("ready"):
            ready_s, ready = time.monotonic() - t0, time.time()
            break
        if time.monotonic() - t0 > 180:
            raise RuntimeError("spawn did not finish in 180 s")
        time.sleep(0.1)
    if options.get("dask") is False:
        return ready_s, None
    return ready_s, job_timings(user, spawned, ready, options["cores"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--user", default="alice")
    ap.add_argument("--name", default="b3_hub_spawn",
                    help="result file name (benchmarks/results/NAME.json)")
    args = ap.parse_args()
    with open(os.path.join(STATE, "hub", "secrets.json")) as f:
        token = json.load(f)["api_token"]
    variants = {"plain": {"dask": False, "cores": 1}, "dask_4": {"cores": 4},
                "dask_8": {"cores": 8}}
    times: dict[str, list[float]] = {k: [] for k in variants}
    jobs: dict[str, list[dict]] = {k: [] for k in variants if k != "plain"}
    for _ in range(args.runs):
        for name, options in variants.items():
            ready_s, timings = spawn(args.user, token, options)
            times[name].append(ready_s)
            if timings is not None:
                jobs[name].append(timings)
    stop(args.user, token)
    med = {k: median(v) for k, v in times.items()}

    def job_median(key: str) -> dict[str, float | None]:
        return {k: median([t[key] for t in v if t[key] is not None]) for k, v in jobs.items()}

    emit({"benchmark": "B3 hub spawn to ready", "runs": args.runs, "median_s": med,
          "runs_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
          "range_s": {k: [round(min(v), 2), round(max(v), 2)] for k, v in times.items()},
          "ratio_vs_plain": {k: round(med[k] / med["plain"], 3) for k in ("dask_4", "dask_8")},
          "workers_after_ready_s": job_median("workers_after_ready_s"),
          "workers_after_ready_runs_s": {k: [round(t["workers_after_ready_s"], 2) for t in v]
                                         for k, v in jobs.items()},
          "command_started_s": job_median("command_started_s"),
          "command_listens_s": job_median("command_listens_s"),
          "notebook_host_nice": nice_setting(),
          "target": "<= 1.1x plain batchspawner"}, args.name)


def nice_setting() -> int:
    """`mpi-lx.notebook-host-nice` as the jobs read it (the same dask config files)."""
    from dask_mpi_lx.config import setting

    return int(setting("notebook-host-nice"))


if __name__ == "__main__":
    main()
