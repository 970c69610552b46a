"""Regenerate docs/benchmarks.md and docs/img/b1_cluster_ready.png from benchmarks/results/.

Run: python benchmarks/report.py   (make bench runs every benchmark, then this)
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "b1_cluster_ready.png"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def cores(r: dict) -> str:
    """The measuring machine's core count, as its result file recorded it."""
    n = r.get("machine", {}).get("cores")
    return f"{n} core" + ("" if n == 1 else "s") if n else "the machine's cores"


def b1(r: dict, out: list[str]) -> None:
    out += ["## B1: cluster ready, ours vs the upstream `dask-mpi` CLI", "",
            ("From `mpirun` start until a client sees all N workers (both timed the same way: "
             "a client started with the job connects as soon as the cluster's address is "
             "published and waits for N workers; a run fails if a worker count ours reports "
             "is not N). " if r.get("timed_by") == "client" else
             "From `mpirun` start until all N workers are connected (ours: when rank 0 logs "
             "that the scheduler has them; upstream: when a polling client sees them). ")
            + "Ours: Nanny workers, TLS, "
            "dashboard; N+2 ranks (Jupyter, scheduler, workers). Upstream CLI: Nanny workers, "
            f"plain TCP, dashboard; N+1 ranks. Oversubscribed on {cores(r)} beyond that many "
            "ranks. "
            "Error lines: lines with Traceback/ERROR/Exception printed from start to shutdown.",
            "", "| workers | runs | ours ready (s) | upstream ready (s) | ratio | ours shutdown (s) "
            "| upstream shutdown (s) | ours error lines | upstream error lines |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        o, u = row["ours"], row["upstream"]
        out.append(f"| {row['workers']} | {row['runs']} | {o['ready_s']} | {u['ready_s']} | "
                   f"{row['ratio']} | {o['shutdown_s']} | {u['shutdown_s']} | "
                   f"{o['error_lines']} | {u['error_lines']} |")
    worst = max(row["ratio"] for row in r["rows"])
    out += ["", f"Target ours <= 1.2x upstream: {verdict(worst <= 1.2)} (worst ratio {worst}). "
            "Zero error lines: " + verdict(all(row["ours"]["error_lines"] == 0
                                               for row in r["rows"])) + ".", ""]
    if worst > 1.2:
        gaps = [round(row["ours"]["ready_s"] - row["upstream"]["ready_s"], 2)
                for row in r["rows"] if row["ratio"] > 1.0]
        out += [f"Where ours is slower the gap is {min(gaps)} to {max(gaps)} s, a start-up "
                "cost rather than one per worker: at the larger sizes ours is as fast or "
                "faster. What ours does that upstream's CLI does not: one more rank "
                "(rank 0, which runs the command), TLS with a key made per job, and the "
                "address published for clients only once every worker is in. Noise between "
                "runs on this shared machine is of the same size.", ""]
    out += ["![B1 plot](img/b1_cluster_ready.png)", "",
            "Command: `python benchmarks/b1_cluster_ready.py`", ""]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [row["workers"] for row in r["rows"]]
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        ax.plot(xs, [row["ours"]["ready_s"] for row in r["rows"]], "o-", label="dask-mpi-lx")
        ax.plot(xs, [row["upstream"]["ready_s"] for row in r["rows"]], "s--",
                label="dask-mpi CLI (upstream)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(f"workers ({cores(r)}, oversubscribed)")
        ax.set_ylabel("seconds until a client sees all workers")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        PLOT.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(PLOT)
    except ImportError:
        out += ["(matplotlib not installed: plot not regenerated)", ""]


def b2(r: dict, out: list[str]) -> None:
    busy, idle = r["busy_site"], r["idle_partition"]
    out += ["## B2: against dask-jobqueue's SLURMCluster on the same Slurm", "",
            f"(a) Busy site: the user's job holds all {busy['allocation_cores']} CPUs of the "
            f"partition and wants {busy['workers_wanted']} workers.", "",
            "| | workers ready | share of the allocation's cores running Dask workers |",
            "|---|---|---:|",
            f"| dask-mpi-lx (inside the job) | {busy['workers_wanted']} in "
            f"{busy['ours_ready_s']} s | {pct(busy['ours_dask_core_share'])} |",
            f"| dask-jobqueue (one job per worker) | {busy['jobqueue_workers_connected']} after "
            f"{busy['jobqueue_workers_after_s']} s ({busy['jobqueue_jobs_pending']} jobs pending)"
            f" | {pct(busy['jobqueue_dask_core_share'])} |", "",
            "Target (ours ready, jobqueue still pending): " + verdict(
                busy["jobqueue_workers_connected"] == 0 and busy["jobqueue_jobs_pending"] > 0)
            + ".", "", "(b) Idle partition: from request to N workers (ours: sbatch of a job "
            "running the launcher; jobqueue: `cluster.scale(N)`), medians. "
            + ("Both timed by a client in the benchmark's process that sees N workers, and "
               "both include starting their scheduler (ours in the job, with its dashboard; "
               "jobqueue's `SLURMCluster` in that process)."
               if r.get("timed_by") == "client" else ""), "",
            "| workers | ours (s) | jobqueue (s) | ratio |", "|---:|---:|---:|---:|"]
    for row in idle:
        out.append(f"| {row['workers']} | {row['ours_s']} | {row['jobqueue_s']} | {row['ratio']} |")
    worst = max(row["ratio"] for row in idle)
    out += ["", f"Target ours <= 1.5x jobqueue: {verdict(worst <= 1.5)} (worst {worst}).", ""]
    if worst > 1.5:
        out += ["Why: ours is one MPI job of N+2 ranks, so before the first worker mpirun "
                "starts every rank, MPI initializes, the scheduler starts in the job (with its "
                "dashboard), and only then each rank's Nanny starts its worker process; "
                "jobqueue's scheduler starts in a Python process that has Dask loaded already, "
                "and each of its jobs is one worker. That fixed part weighs most at 2 workers "
                "and little at 6. What would cut it: starting the Nannies with the scheduler's "
                "address (fixed in advance on one host) while the scheduler starts, instead of "
                "after.", ""]
    out += ["Command: `python benchmarks/b2_jobqueue.py` (needs `etc/local/stack.py up`)", ""]


def b3(r: dict, out: list[str]) -> None:
    m, ratio = r["median_s"], r["ratio_vs_plain"]
    rng = r.get("range_s", {})

    def spread(k: str) -> str:
        return f" ({rng[k][0]}-{rng[k][1]})" if k in rng else ""

    nice = r.get("notebook_host_nice")
    after = r.get("workers_after_ready_s", {})
    out += ["## B3: the notebook first: hub spawn request to server ready", "",
            "Through the hub's REST API on the local stack, the variants alternating, medians "
            f"of {r['runs']} runs with their range. The spawner starts Jupyter at once "
            "(`--no-wait-for-workers`); behind the hub the Dask ranks bind their ports only once "
            "Jupyter listens on its own (so they cannot take it), and join while the Lab loads"
            + (f"; the Dask ranks on the notebook's host run at niceness {nice} "
               "(`mpi-lx.notebook-host-nice`)" if nice is not None else "")
            + ". Workers after ready: from the hub's ready until the job's log shows the last "
            "worker active (negative: before it).", "",
            "| variant | ready (s) | ratio to plain | workers after ready (s) |",
            "|---|---:|---:|---:|",
            f"| plain batchspawner (Dask off, 1 core) | {m['plain']}{spread('plain')} | 1 | – |"]
    for k, label in (("dask_4", "4 ranks"), ("dask_8", "8 ranks")):
        out.append(f"| with the launcher, {label} | {m[k]}{spread(k)} | {ratio[k]} | "
                   f"{after.get(k, '–')} |")
    met = max(ratio.values()) <= 1.1
    out += ["", "Target <= 1.1x: " + verdict(met) + ".", ""]
    other = load("b3_hub_spawn_nice0")
    if other and other.get("notebook_host_nice") == 0 and nice:
        o = other["ratio_vs_plain"]
        oa = other.get("workers_after_ready_s", {})
        out += [f"The same runs with `mpi-lx.notebook-host-nice: 0` (another series, "
                f"{other['runs']} runs): ratio {o['dask_4']} at 4 ranks and {o['dask_8']} at 8 "
                f"(niceness {nice}: {ratio['dask_4']} and {ratio['dask_8']}); workers after "
                f"ready {oa.get('dask_4', '–')} s and {oa.get('dask_8', '–')} s (niceness "
                f"{nice}: {after.get('dask_4', '–')} s and {after.get('dask_8', '–')} s).", ""]
    started, listens = r.get("command_started_s"), r.get("command_listens_s")
    if started and listens:
        o_listens = (other or {}).get("command_listens_s")
        out += [f"In the job's log: the launcher starts Jupyter {started['dask_4']} s (4 ranks) "
                f"and {started['dask_8']} s (8 ranks) after its own start, once every rank has "
                f"said hello; Jupyter then listens after {listens['dask_4']} s and "
                f"{listens['dask_8']} s"
                + (f" (niceness 0: {o_listens['dask_4']} s and {o_listens['dask_8']} s)"
                   if o_listens else "") + ".", ""]
    if not met:
        out += ["Why it is not met here: before the launcher's clock starts, mpirun starts "
                "every rank and MPI initializes, which a plain spawn does not do; on 2 cores "
                "4 or 8 Python ranks starting compete with the start of Jupyter, whose own "
                "imports take seconds here; and the plain spawn itself varies by seconds from "
                "run to run on this shared machine (the ranges above), which is as large as "
                "the difference. What would meet it: a node with a core per rank (as an HPC "
                "allocation has), or starting Jupyter before MPI is up and handing it the "
                "cluster's address afterwards.", ""]
    out += ["Command: `python benchmarks/b3_hub_spawn.py` (needs `etc/local/stack.py up`; "
            "`make bench` also runs it with `mpi-lx.notebook-host-nice: 0` as "
            "`--name b3_hub_spawn_nice0`)", ""]


def child_start(r: dict, out: list[str]) -> None:
    out += ["## The notebook's start with the launcher", "",
            "From process start to rank 0's child running (no hub: the launcher alone), medians "
            f"of {r['runs']} alternating runs.", "",
            "| ranks | child started directly (s) | `--wait-for-workers` (s) | "
            "`--no-wait-for-workers` (s) |", "|---:|---:|---:|---:|"]
    for row in r["rows"]:
        out.append(f"| {row['ranks']} | {row['direct_s']} | {row['wait_for_workers_s']} | "
                   f"{row['no_wait_s']} |")
    out += ["", "Command: `python benchmarks/child_start_delay.py`", ""]


def b4(r: dict, out: list[str]) -> None:
    out += ["## B4: shutdown", "", "| ranks | notebook exit to every rank gone (s) | "
            "scancel to every rank gone (s) |", "|---:|---:|---:|"]
    for row in r["rows"]:
        out.append(f"| {row['ranks']} | {row['notebook_exit_to_all_gone_s']} | "
                   f"{row.get('scancel_to_all_gone_s', '–')} |")
    worst = max(max(row["notebook_exit_to_all_gone_s"], row.get("scancel_to_all_gone_s", 0))
                for row in r["rows"])
    out += ["", f"Target <= 5 s and within Slurm's KillWait ({r['slurm_killwait_s']} s): "
            f"{verdict(worst <= 5)} (worst {worst} s).", "",
            "Command: `python benchmarks/b4_shutdown.py`", ""]


def b5(r: dict, out: list[str]) -> None:
    m, ratio = r["median"], r["throughput_ratio"]
    out += ["## B5: overhead of the attached cluster", "",
            f"{r['workers']} workers, 1 thread each; medians of {r['rounds']} alternating rounds "
            "in one job.", "",
            "| cluster | 10,000 tiny tasks (tasks/s) | 8000² array sum, 256 chunks (s) |",
            "|---|---:|---:|",
            f"| MPICluster (TLS) | {m['mpi']['tiny_tasks_per_s']} | {m['mpi']['array_s']} |",
            f"| LocalCluster (TCP) | {m['local']['tiny_tasks_per_s']} | {m['local']['array_s']} |",
            f"| LocalCluster (TLS) | {m['local_tls']['tiny_tasks_per_s']} | "
            f"{m['local_tls']['array_s']} |", "",
            f"Throughput ratio vs LocalCluster TCP: tiny tasks {ratio['vs_local']['tiny_tasks']}, "
            f"array {ratio['vs_local']['array']}; vs LocalCluster TLS: tiny tasks "
            f"{ratio['vs_local_tls']['tiny_tasks']}, array {ratio['vs_local_tls']['array']}. "
            "Target >= 0.95x: " + verdict(min(ratio['vs_local'].values()) >= 0.95) + ".", "",
            "Command: `python benchmarks/b5_throughput.py`", ""]


def b6(r: dict, out: list[str]) -> None:
    o, u, p = r["ours"], r["upstream_cli"], r["ours_after_scale_1"]
    out += ["## B6: idle cost", "",
            f"{r['ranks']} ranks idle for {r['seconds']} s. A rank counts together with the "
            "processes it started (a Nanny's worker process). CPU is the share of one core; "
            "memory is unique memory (USS).", "",
            "| rank | CPU | USS (MB) |", "|---|---:|---:|",
            f"| ours, idle worker rank | {pct(o['worker_rank']['cpu_median'])} | "
            f"{o['worker_rank']['uss_mb_median']} |",
            f"| ours, parked worker rank (after `scale(1)`) | "
            f"{pct(p['parked_rank']['cpu_median'])} | {p['parked_rank']['uss_mb_median']} |",
            f"| ours, scheduler rank | {pct(o['scheduler_rank']['cpu_median'])} | "
            f"{o['scheduler_rank']['uss_mb_median']} |",
            f"| upstream CLI, idle worker rank | {pct(u['worker_rank']['cpu_median'])} | "
            f"{u['worker_rank']['uss_mb_median']} |",
            f"| upstream CLI, scheduler rank | {pct(u['scheduler_rank']['cpu_median'])} | "
            f"{u['scheduler_rank']['uss_mb_median']} |", "",
            "Target, an idle worker rank under 2% of a core: "
            + verdict(o["worker_rank"]["cpu_median"] < 0.02) + ".", "",
            "Command: `python benchmarks/b6_idle_cost.py`", ""]


def b8(r: dict, out: list[str]) -> None:
    out += ["## B8: the cost of crossing hosts (simulated nodes)", "",
            "From `mpirun` start until a client inside the job sees N workers, the same N on 1, "
            "2 and 3 simulated Slurm nodes (network namespaces on this machine: no real "
            "network latency, one shared set of cores; see [Multi-node jobs](multinode.md)). "
            "Ranks spread evenly over the nodes; each run is its own Slurm job; ours and the "
            "upstream `dask-mpi` CLI alternate. Medians of "
            f"{r['rows'][0]['runs'] if r['rows'] else '?'} runs, with the range.", "",
            "| nodes | workers | worker hosts (ours / upstream) | ours (s) | upstream (s) "
            "| ratio | ours vs 1 node | upstream vs 1 node | error lines (ours / upstream) |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for row in r["rows"]:
        o, u = row["ours"], row["upstream"]
        out.append(
            f"| {row['nodes']} | {row['workers']} | {o['worker_hosts']} / {u['worker_hosts']} "
            f"| {o['ready_s']:.2f} ({o['ready_spread_s'][0]:.2f}-{o['ready_spread_s'][1]:.2f}) "
            f"| {u['ready_s']:.2f} ({u['ready_spread_s'][0]:.2f}-{u['ready_spread_s'][1]:.2f}) "
            f"| {row['ratio']:.2f} | {row['vs_one_node']['ours']:.2f} "
            f"| {row['vs_one_node']['upstream']:.2f} | {o['error_lines']} / {u['error_lines']} |")
    out += ["", "Command: `python benchmarks/b8_multinode.py` (as root, with `stack.py up "
            "--nodes 3`)", ""]


def b9(r: dict, out: list[str]) -> None:
    def cell(side: dict, key: str) -> str:
        value = side.get(key)
        if value is None:
            return f"failed ({side.get('failures', '?')} of {len(side.get('runs', []))})"
        return str(value)

    out += ["## B9: clusters as batch jobs of their own, `MPIJobCluster` vs dask-jobqueue", "",
            "Both submit batch jobs to the same Slurm from a Python process outside the jobs. "
            "Ours (`MPIJobCluster`): MPI jobs running `dask-mpi-lx serve`; the first job's rank "
            "0 keeps the job, rank 1 runs the scheduler, every other rank a Nanny worker; each "
            "joining job runs one worker per rank but rank 0; TLS. dask-jobqueue's "
            "`SLURMCluster`: the scheduler runs in the Python process, one job per worker "
            "(`processes=1, cores=1`), "
            + ("TLS (`Security.temporary()`)" if r.get("tls", {}).get("jobqueue")
               else "plain TCP (no TLS)") + ". "
            "Time to N: from the constructor call until a client sees N workers (ours: the "
            "constructor returns once the first job runs and its scheduler answers, then "
            "`scale(N)`; jobqueue: `scale(N)`). Jobs: the queue entries then. Close: from "
            "`close()` until the queue lists none of its jobs. "
            f"{r.get('worker_memory', '?')} per worker, partition `{r.get('partition', '?')}` "
            f"({r.get('node_cpus', '?')} CPUs configured on its one node; the machine has "
            f"{cores(r)}), "
            + ("both with `--oversubscribe`, " if r.get("oversubscribe_flag") else "")
            + f"{r.get('runs', '?')} run(s) each (medians), at most {r.get('limit_s', '?'):g} s "
            "per run.", "",
            "| workers | ours job shape | ours time to N (s) | ours jobs | jobqueue time to N (s) "
            "| jobqueue jobs | ratio | ours close (s) | jobqueue close (s) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for row in r["rows"]:
        o, j, shape = row.get("ours", {}), row.get("jobqueue", {}), row.get("ours_shape", {})
        out.append(f"| {row['workers']} | {shape.get('jobs', '?')} x {shape.get('cores', '?')} "
                   f"ranks | {cell(o, 'ready_s')} | {o.get('jobs') or '–'} "
                   f"| {cell(j, 'ready_s')} | {j.get('jobs') or '–'} "
                   f"| {row.get('ratio') or '–'} | {o.get('close_s') or '–'} "
                   f"| {j.get('close_s') or '–'} |")
        note = row.get("oversubscription", {}).get("note")
        if note:
            notes.append(f"N={row['workers']}: {note}.")
        for side, name in ((o, "ours"), (j, "jobqueue")):
            for run in side.get("runs", []):
                if not run.get("ok"):
                    notes.append(f"N={row['workers']}, {name} failed: {run.get('error')}.")
    out += ["", *[f"- {n}" for n in notes], "",
            "Command: `python benchmarks/b9_job_clusters.py` (as a normal user; needs "
            "`etc/local/stack.py up` and dask-jobqueue)", ""]


def b7_cores(r: dict) -> float:
    """The cores B7 could use: what it recorded as usable, else the machine's count."""
    return r.get("cpus") or r.get("machine", {}).get("cores") or 0


def b7(r: dict, out: list[str]) -> None:
    """B7's table, its skipped sizes and failures, and the target computed from the rows."""
    def pair(row: dict, key: str, mem: bool = False) -> str:
        cells = []
        for side in ("ours", "upstream"):
            d = (row[side].get("memory") or {}) if mem else row[side]
            value = d.get(key)
            cells.append("failed" if not mem and row[side].get("ready_s") is None
                         else "–" if value is None else str(value))
        return " / ".join(cells)

    rows = [row for row in r["rows"] if "skipped" not in row]
    skipped = [row for row in r["rows"] if "skipped" in row]
    kinds = {(row[side].get("memory") or {}).get("kind") for row in rows
             for side in ("ours", "upstream")} - {None}
    memory = ("unique memory (USS)" if kinds == {"uss"} else
              "unique memory (USS; resident memory, RSS, where USS could not be read)")
    out += ["## B7: scale", "",
            f"B1's runs at 16 to 256 workers on {b7_cores(r):g} cores "
            f"({r.get('mpi') or 'MPI unknown'}), "
            f"in one run that keeps to a wall budget of {r.get('budget_s') or '?'} s (sizes "
            "that would not fit are skipped), ours and the "
            "upstream `dask-mpi` CLI alternating, "
            f"{r.get('runs', 1)} run(s) each (medians). Ours: Nanny workers, TLS, N+2 ranks; "
            "upstream: Nanny workers, plain TCP, N+1 ranks; dashboards "
            + ("served by " + r["dashboard"] if r.get("dashboard") else "without bokeh") + ". "
            "Ready: from `mpirun` start until a client sees N workers; shutdown: from then until "
            "mpirun has exited. Memory: " + memory + " in MB, sampled when the client sees "
            "all workers; a rank counts with the processes it started (a Nanny's worker "
            "process). Error lines as in B1.", "",
            "| workers | ours ready (s) | upstream ready (s) | ratio | shutdown ours / upstream "
            "(s) | error lines ours / upstream | MB per worker rank ours / upstream "
            "| scheduler MB ours / upstream |",
            "|---:|---:|---:|---:|---|---|---|---|"]
    notes = []
    for row in rows:
        o, u = row["ours"], row["upstream"]
        out.append(f"| {row['workers']} | {o.get('ready_s') or 'failed'} "
                   f"| {u.get('ready_s') or 'failed'} | {row.get('ratio') or '–'} "
                   f"| {pair(row, 'shutdown_s')} | {pair(row, 'error_lines')} "
                   f"| {pair(row, 'worker_rank_mb', mem=True)} "
                   f"| {pair(row, 'scheduler_mb', mem=True)} |")
        for side, name in ((o, "ours"), (u, "upstream")):
            notes += [f"N={row['workers']}, {name} failed: {f.splitlines()[0][:300]}"
                      for f in side.get("failures", [])]
    notes += [f"N={row['workers']} skipped ({row['skipped']}: {row.get('left_s', '?')} s left"
              + (f", {row['estimate_s']} s estimated" if row.get("estimate_s") else "") + ")"
              for row in skipped]
    at_256 = next((row for row in rows if row["workers"] == 256), None)
    if at_256 and at_256.get("ratio") is not None:
        speed = f"{verdict(at_256['ratio'] <= 1.0)} (ratio {at_256['ratio']} at 256 workers)"
    else:
        speed = "**not measured** (no ours and upstream result at 256 workers)"
    errors = [row["ours"].get("error_lines") for row in rows]
    clean = bool(rows) and all(e == 0 for e in errors)
    out += ["", *[f"- {n}." for n in notes], *([""] if notes else []),
            f"Target ours <= 1.0x upstream CLI at 256 workers: {speed}. Zero error lines (ours): "
            f"{verdict(clean)}.", "",
            "Command: `bash benchmarks/device/run_b7.sh` on the 16-core machine (it runs "
            "`python benchmarks/b7_scale.py`; see `benchmarks/device/`)", ""]


def machine_lines() -> list[str]:
    """One line per machine and software the results were measured with (as each result
    file recorded them), naming the results and the days."""
    seen: dict[str, dict] = {}
    for path in sorted(RESULTS.glob("*.json")):
        m = dict(json.loads(path.read_text())["machine"])
        date = m.pop("date", "?")
        entry = seen.setdefault(json.dumps(m, sort_keys=True), {"names": [], "dates": set()})
        entry["names"].append(path.stem)
        entry["dates"].add(date)
    lines = []
    for key, entry in seen.items():
        d = json.loads(key)
        versions = ", ".join(f"{k} {v}" for k, v in sorted(d.get("versions", {}).items()))
        lines.append(f"Machine: `{d['host']}`, {d['cores']} cores, Python {d['python']}"
                     + (f" ({versions})" if versions else "")
                     + f"; measured {', '.join(sorted(entry['dates']))}: "
                     + ", ".join(entry["names"]) + ".")
    return lines


def main() -> None:
    out = ["# Benchmarks", "",
           "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; "
           "`make bench` runs every benchmark (one after the other: they share the cores) and "
           "then this. Each benchmark is a script that prints one JSON line; none is a test.",
           ""]
    out += [*machine_lines(), ""]
    sections = (("child_start_delay", child_start), ("b1_cluster_ready", b1),
                ("b2_jobqueue", b2), ("b3_hub_spawn", b3), ("b4_shutdown", b4),
                ("b5_throughput", b5), ("b6_idle_cost", b6), ("b8_multinode", b8),
                ("b9_job_clusters", b9))
    for name, fn in sections:
        r = load(name)
        if r:
            fn(r, out)
        else:
            out += [f"## {name}", "", "Not run yet: no result file.", ""]
    r = load("b7_scale")
    if r and b7_cores(r) >= 16:
        b7(r, out)
    else:
        out += ["## B7: scale", "",
                "B7 (16, 32, 64, 128 and 256 workers, ours and the upstream `dask-mpi` CLI) "
                "has not been measured on a 16-core machine yet. It runs there as one command, "
                "`bash benchmarks/device/run_b7.sh`, carrying `benchmarks/device/wheels` (made "
                "by `bash benchmarks/device/fetch_wheels.sh` where there is network); its "
                "`b7_scale.json` goes to `benchmarks/results/`. The same script runs here at 2 "
                "and 4 workers with `B7_DRY_RUN=1 bash benchmarks/device/run_b7.sh` (this "
                "machine's venv and Open MPI; nothing saved).", ""]
    DOC.write_text("\n".join(out))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
