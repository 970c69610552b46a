"""Stands in for the Jupyter server as rank 0's child: reports what a notebook would see.

Usage: notebook_probe.py report            -> one JSON line of facts on stdout
       notebook_probe.py exit N            -> exit with code N
       notebook_probe.py wait READY_FILE   -> write facts to READY_FILE, then sleep until killed
"""

import json
import os
import stat
import sys
import time
from pathlib import Path


def facts() -> dict:
    out = {
        "pid": os.getpid(),
        "address": os.environ.get("DASK_SCHEDULER_ADDRESS"),
        "dask_config": os.environ.get("DASK_CONFIG"),
        "mpi_vars": sorted(k for k in os.environ if k.startswith(("OMPI_", "PMIX_", "PMI_",
                                                                   "HYDI_", "HYDRA_"))),
        "hub_token": os.environ.get("JUPYTERHUB_API_TOKEN"),
    }
    if out["dask_config"]:
        d = out["dask_config"]
        out["dask_config_mode"] = oct(stat.S_IMODE(os.stat(d).st_mode))
        out["job_dir"] = os.path.dirname(d)
        out["job_dir_mode"] = oct(stat.S_IMODE(os.stat(out["job_dir"]).st_mode))
        out["files"] = {}
        for root, _dirs, files in os.walk(out["job_dir"]):
            for f in files:
                p = os.path.join(root, f)
                out["files"][p] = oct(stat.S_IMODE(os.stat(p).st_mode))
    if out["address"]:
        import dask.config
        from distributed import Client

        out["config_tls"] = dask.config.get("distributed.comm.require-encryption", None)
        out["labextension_initial"] = dask.config.get("labextension.initial", None)
        out["labextension_factory"] = dask.config.get("labextension.factory", None)
        # where Dask in a kernel spills: a LocalCluster's worker, in this process
        from distributed import LocalCluster

        with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local:
            out["local_worker_dir"] = next(iter(local.workers.values())).local_directory
        out["temporary_directory"] = dask.config.get("temporary-directory", None)
        with Client(timeout="30s") as client:
            client.wait_for_workers(1, timeout=30)
            info = client.scheduler_info()
            out["workers"] = sorted(w["name"] for w in info["workers"].values())
            out["worker_addresses"] = sorted(info["workers"])
            out["sum"] = client.submit(sum, [1, 2]).result()
            out["worker_tokens"] = list(client.run(
                lambda: os.environ.get("JUPYTERHUB_API_TOKEN")).values())
            out["worker_mpi_vars"] = sorted({k for v in client.run(
                lambda: [k for k in os.environ if k.startswith(("OMPI_", "PMIX_"))]).values()
                for k in v})
            out["scheduler_token"] = client.run_on_scheduler(
                lambda: os.environ.get("JUPYTERHUB_API_TOKEN"))
            out["notebook_nice"] = os.nice(0)
            out["worker_nice"] = sorted(client.run(lambda: os.nice(0)).values())
            out["scheduler_nice"] = client.run_on_scheduler(lambda: os.nice(0))
            # rank processes (the Nanny's parent side is the MPI rank itself)
            rank_pids = list(client.run(os.getppid).values())
            rank_pids.append(client.run_on_scheduler(os.getpid))
            out["rank_pids"] = rank_pids
            out["rank_proc_environ_has_token"] = [
                b"JUPYTERHUB_API_TOKEN" in Path(f"/proc/{p}/environ").read_bytes()
                for p in rank_pids]
    from mpi4py import MPI

    out["mpi_size"] = MPI.COMM_WORLD.Get_size()
    return out


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "report"
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "wait":
        data = facts()
        with open(sys.argv[2] + ".tmp", "w") as f:
            json.dump(data, f)
        os.rename(sys.argv[2] + ".tmp", sys.argv[2])
        while True:
            time.sleep(1)
    print("PROBE " + json.dumps(facts()), flush=True)
