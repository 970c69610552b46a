"""MPICluster scenarios, run as rank 0's child of `dask-mpi-lx launch` (a notebook's view).

Usage: cluster_scenarios.py SCENARIO   -> prints "RESULT <json>" on stdout
"""

import asyncio
import json
import os
import subprocess
import sys
import time

from distributed import Client

from dask_mpi_lx import MPICluster


def launcher_ranks() -> int:
    """How many launcher processes (MPI ranks) are alive in this job."""
    marker = os.environ["SCENARIO_MARKER"]
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines()
               if marker in line and "launch" in line and "mpirun" not in line)


def settled(cluster, n):
    """n workers connected and no rank still parking or starting (both pushed by the
    scheduler's stream)."""
    return len(cluster.scheduler_info["workers"]) == n and cluster._pool.settled


def wait_workers(cluster, n, timeout=30):
    deadline = time.time() + timeout
    while not settled(cluster, n) and time.time() < deadline:
        time.sleep(0.1)
    return len(cluster.scheduler_info["workers"])


def attach():
    with MPICluster() as cluster:
        wait_workers(cluster, 3)
        with Client(cluster) as client:
            total = client.submit(sum, [1, 2]).result()
        return {
            "mode": cluster.mode,
            "workers": sorted(w["name"] for w in cluster.scheduler_info["workers"].values()),
            "repr": repr(cluster),
            "html": cluster._repr_html_(),
            "dashboard_link": cluster.dashboard_link,
            "limit": cluster.limit,
            "sum": total,
            "name": cluster.name,
        }, cluster


def scenario_attach():
    result, cluster = attach()
    # close() detached only: the job's scheduler still answers
    with Client() as client:
        result["after_close_workers"] = len(client.scheduler_info()["workers"])
    return result


def scenario_scale_cycles():
    counts = []
    ranks = []
    with MPICluster() as cluster, Client(cluster) as client:
        wait_workers(cluster, 3)
        for _ in range(3):
            cluster.scale(1)
            counts.append(len(client.scheduler_info()["workers"]))
            states = sorted(v["state"] for v in cluster.worker_ranks.values())
            counts.append(states)
            ranks.append(launcher_ranks())
            cluster.scale(3)
            counts.append(len(client.scheduler_info()["workers"]))
            ranks.append(launcher_ranks())
        total = client.submit(sum, [4, 5]).result()
        try:
            cluster.scale(4)
            error = None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        try:
            cluster.scale(-1)
            negative = None
        except Exception as e:
            negative = f"{type(e).__name__}: {e}"
    return {"counts": counts, "ranks": ranks, "sum": total, "too_many": error,
            "negative": negative}


def scenario_adapt():
    import dask

    trace = {}
    with MPICluster() as cluster, Client(cluster) as client:
        wait_workers(cluster, 3)
        adaptive = cluster.adapt(minimum=1, maximum=10, wait_count=2, interval="300ms")
        trace["min_max"] = [adaptive.minimum, adaptive.maximum]
        trace["idle_workers"] = wait_workers(cluster, 1, timeout=60)
        trace["idle_states"] = sorted(v["state"] for v in cluster.worker_ranks.values())
        futures = client.map(lambda x: time.sleep(0.5) or x, range(60))
        trace["busy_workers"] = wait_workers(cluster, 3, timeout=60)
        trace["result"] = sum(client.gather(futures))
        trace["after_idle"] = wait_workers(cluster, 1, timeout=60)
        cluster.scale(2)  # manual scaling stops adaptive
        trace["adaptive_state"] = adaptive.state
        time.sleep(2)
        trace["manual"] = len(cluster.scheduler_info["workers"])
        del dask
    return trace


def scenario_two_attached():
    a = MPICluster()
    b = MPICluster()
    wait_workers(a, 3)
    wait_workers(b, 3)
    a.scale(2)
    time.sleep(2.5)  # one refresh interval and more
    out = {"a": len(a.scheduler_info["workers"]), "b": len(b.scheduler_info["workers"])}
    b.scale(3)
    time.sleep(2.5)
    out["a_after"] = len(a.scheduler_info["workers"])
    out["b_after"] = len(b.scheduler_info["workers"])
    a.close()
    b.close()
    return out


def scenario_race():
    """The review's race: two attached clusters; scale(1), then scale(3) and scale(1)
    0.3 s apart, before the ranks report back."""
    import threading
    import warnings

    a = MPICluster()
    b = MPICluster()
    wait_workers(a, 3)
    a.scale(1)
    caught = []

    def up():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            a.scale(3)
        caught.extend(str(x.message) for x in w)

    t = threading.Thread(target=up)
    t.start()
    time.sleep(0.3)
    b.scale(1)
    t.join()
    out = {"after_race": wait_workers(b, 1, timeout=20), "warned": caught}
    b.scale(1)
    out["after_again"] = len(b.scheduler_info["workers"])
    out["states"] = sorted(v["state"] for v in b.worker_ranks.values())
    out["repr"] = repr(b)
    a.close()
    b.close()
    return out


def scenario_labextension():
    import dask.config

    dask.config.set({"mpi-lx.jobs.enabled": False})  # NEW: the site turned job clusters off

    async def drive():
        # imported in the running loop, as in the Jupyter server: its module-level manager
        # starts labextension.initial from the job config
        from dask_labextension.manager import manager

        trace = {}
        await manager
        models = manager.list_clusters()
        trace["initial"] = [(m["name"], m["workers"], m["dashboard_link"]) for m in models]
        cid = models[0]["id"]
        model = await manager.scale_cluster(cid, 1)
        trace["scaled_down"] = model["workers"]
        model = await manager.scale_cluster(cid, 3)
        trace["scaled_up"] = model["workers"]
        model = manager.adapt_cluster(cid, 1, 2)
        trace["adapt"] = model["adapt"]
        try:
            await manager.start_cluster()
            trace["new"] = "created a duplicate"
        except Exception as e:
            trace["new"] = str(e)
        trace["listed_after_new"] = len(manager.list_clusters())
        model = await manager.scale_cluster(cid, 2)
        trace["manual_after_adapt"] = model["workers"]
        trace["title_after_scale"] = manager.get_cluster(cid)["name"]
        await manager.close_cluster(cid)   # SHUTDOWN: parks the job's workers
        trace["after_close"] = len(manager.list_clusters())
        with Client() as client:
            trace["workers_after_shutdown"] = len(client.scheduler_info()["workers"])
        model = await manager.start_cluster()   # NEW: attaches again
        await asyncio.sleep(0.2)
        new = manager.get_cluster(model["id"])
        trace["new_after_shutdown"] = [new["name"], new["workers"]]
        model = await manager.scale_cluster(model["id"], 3)
        trace["new_scaled"] = [manager.get_cluster(model["id"])["name"], model["workers"]]
        await manager.close()
        return trace

    return asyncio.run(drive())


def scenario_late_scheduler_timeout():
    os.environ["DASK_SCHEDULER_ADDRESS"] = "tls://127.0.0.1:9"
    import dask.config

    dask.config.refresh()
    t0 = time.time()
    try:
        MPICluster(timeout="2s")
        return {"error": None}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}", "seconds": time.time() - t0}


try:
    from distributed import Nanny
except ImportError:  # pragma: no cover
    Nanny = object


class FailsToStart(Nanny):
    """`--worker-class tests.probes.cluster_scenarios.FailsToStart`: the rank named in
    SCENARIO_FAIL_RANK builds its Nanny, which then fails to start."""

    async def start_unsafe(self):
        if self.name == f"rank-{os.environ.get('SCENARIO_FAIL_RANK', '')}":
            raise OSError(f"injected start failure on {self.name}")
        return await super().start_unsafe()


def scenario_failed_start():
    with MPICluster() as cluster:
        deadline = time.time() + 30
        while cluster.worker_ranks.get(4, {}).get("state") != "lost" and time.time() < deadline:
            time.sleep(0.1)
        states = {r: v["state"] for r, v in cluster.worker_ranks.items()}
        cluster.scale(2)
        return {"states": states, "limit": cluster.limit,
                "workers": len(cluster.scheduler_info["workers"]), "repr": repr(cluster)}


def scenario_busy_cycle():
    """Every worker computes and exchanges data, all but one park, all come back, compute
    again; then the job stops with all of them running."""
    import dask.array as da

    with MPICluster() as cluster, Client(cluster):
        n = cluster.limit
        sizes = [wait_workers(cluster, n, timeout=120)]
        x = da.ones((2000, 2000), chunks=(250, 250))
        sums = [float((x @ x.T).sum().compute())]
        cluster.scale(1)
        sizes.append(wait_workers(cluster, 1, timeout=120))
        cluster.scale(n)
        sizes.append(wait_workers(cluster, n, timeout=120))
        sums.append(float((x @ x.T).sum().compute()))
    return {"limit": n, "sizes": sizes, "sums": sums}


if __name__ == "__main__":
    outcome = globals()["scenario_" + sys.argv[1]]()
    print("RESULT " + json.dumps(outcome), flush=True)
