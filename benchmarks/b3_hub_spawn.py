"""B3: hub spawn request to server ready, plain batchspawner (Dask off, 1 core) vs with the
launcher (4 and 8 ranks), through the REST API of the local stack (etc/local/stack.py up).

Run: python benchmarks/b3_hub_spawn.py [--runs 3] [--user alice]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request

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


def spawn_seconds(user: str, token: str, options: dict) -> float:
    stop(user, token)
    time.sleep(1)
    t0 = time.monotonic()
    api("POST", f"/hub/api/users/{user}/server", token, options)
    while True:
        s = server(user, token)
        if s and s.get("ready"):
            return time.monotonic() - t0
        if time.monotonic() - t0 > 180:
            raise RuntimeError("spawn did not finish in 180 s")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--user", default="alice")
    args = ap.parse_args()
    with open(os.path.join(STATE, "hub", "secrets.json")) as f:
        token = json.load(f)["api_token"]
    variants = {"plain": {"dask": False, "cores": 1}, "dask_4": {"cores": 4},
                "dask_8": {"cores": 8}}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.runs):
        for name, options in variants.items():
            times[name].append(spawn_seconds(args.user, token, options))
    stop(args.user, token)
    med = {k: median(v) for k, v in times.items()}
    emit({"benchmark": "B3 hub spawn to ready", "runs": args.runs, "median_s": med,
          "runs_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
          "ratio_vs_plain": {k: round(med[k] / med["plain"], 3) for k in ("dask_4", "dask_8")},
          "target": "<= 1.1x plain batchspawner"}, "b3_hub_spawn")


if __name__ == "__main__":
    main()
