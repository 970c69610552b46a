"""The batch jobs of one cluster: submit, follow and cancel them, by their common name."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os

from ..exceptions import MPILXError
from ..runtime.cluster_dir import ClusterDir
from .batch_system import JobState, batch_system, run, submit_environment
from .script import render, serve_command
from .spec import MIN_JOINING_JOB, JobSpec

logger = logging.getLogger(__name__)


class JobSet:
    """Jobs named ``job_name`` of this user: at most one first job (it runs the scheduler)
    and any number of joining jobs (workers for that scheduler)."""

    def __init__(self, job_name: str, spec: JobSpec, directory: ClusterDir):
        self.job_name = job_name
        self.spec = spec
        self.directory = directory
        self.system = batch_system(spec.batch_system)
        self.first: str | None = None
        self.states: dict[str, JobState] = {}  # as of the last `refresh`, in submission order
        self.cores: dict[str, int] = {}  # ranks of the jobs submitted from here

    async def submit(self, joining: bool, spec: JobSpec | None = None) -> str:
        """Submit one job; its id. `MPILXError` with the batch system's own words."""
        spec = spec or self.spec
        script = render(spec, serve_command(spec, self.directory.path, joining))
        # a joining job waits in the queue until the first job (its scheduler) has started,
        # rather than idle its nodes for the join timeout
        after = self.first if joining else None
        out = await run(self.system.submit_argv(self.job_name, spec.account, after),
                        stdin=script, env=submit_environment())
        job_id = self.system.parse_submitted(out)
        if not job_id:
            raise MPILXError(f"the batch system gave no job id for {self.job_name}: {out!r}")
        if not joining:
            self.first = job_id
        self.states[job_id] = JobState(job_id, "pending")
        self.cores[job_id] = spec.cores
        logger.info("submitted %s job %s (%s: %d ranks on %d node(s), %s)", self.job_name,
                    job_id, "workers" if joining else "scheduler and workers", spec.cores,
                    spec.nodes, spec.walltime_hms)
        return job_id

    async def refresh(self) -> dict[str, JobState]:
        """Ask the batch system; a job it no longer lists has ended."""
        listed = {j.job_id: j for j in await self.system.list(self.job_name)}
        known = {i: listed.get(i, JobState(i, "ended")) for i in self.states}
        known.update(listed)
        self.states = {i: s for i, s in known.items() if s.active or i == self.first}
        return self.states

    @property
    def joining(self) -> list[JobState]:
        """Active joining jobs, running ones first, older first."""
        jobs = [s for i, s in self.states.items() if i != self.first and s.active]
        return sorted(jobs, key=lambda s: s.state != "running")

    async def cancel(self, ids: list[str]) -> None:
        if not ids:
            return
        await self.system.cancel(ids)
        for i in ids:
            if i == self.first:
                self.states[i] = JobState(i, "ended")
            else:
                self.states.pop(i, None)
        logger.info("cancelled %s job(s) %s", self.job_name, ", ".join(ids))

    def workers_of(self, job: JobState) -> int:
        """A joining job's workers (all its ranks but rank 0); a job another cluster object
        submitted counts as the usual shape."""
        return self.cores.get(job.job_id, self.spec.cores) - 1

    async def match_workers(self, n_workers: int, spec: JobSpec | None = None) -> None:
        """Submit or cancel joining jobs until they hold at least ``n_workers`` workers, with
        no job to spare: the last job submitted is only as big as needed (one-node jobs),
        and pending jobs go before running ones, the newest first."""
        spec = spec or self.spec
        jobs = self.joining
        have = sum(self.workers_of(j) for j in jobs)
        while have < n_workers:
            missing = n_workers - have
            shape = spec
            if missing < spec.workers(joining=True) and spec.nodes == 1:
                shape = dataclasses.replace(spec, cores=max(MIN_JOINING_JOB, missing + 1))
            await self.submit(joining=True, spec=shape)
            have += shape.workers(joining=True)
        cancel = []
        for job in sorted(jobs, key=lambda s: (s.state == "running", -jobs.index(s))):
            if have - self.workers_of(job) >= n_workers:
                cancel.append(job.job_id)
                have -= self.workers_of(job)
        await self.cancel(cancel)

    async def cancel_all(self) -> None:
        """Cancel every job: the joining ones first (their workers leave before the first
        job's scheduler closes), then the first, then any other job of this name (a submit
        cut short before its id came back). One failed cancel does not stop the others;
        `MPILXError` names every failure."""
        with contextlib.suppress(MPILXError):
            await self.refresh()
        first = self.states.get(self.first or "")
        problems = []
        cancelled: set[str] = set()
        for ids in ([s.job_id for s in self.joining],
                    [first.job_id] if first is not None and first.active else []):
            try:
                await self.cancel(ids)
                cancelled.update(ids)
            except MPILXError as e:
                problems.append(str(e))
        try:
            unknown = [j.job_id for j in await self.system.list(self.job_name)
                       if j.active and j.job_id not in cancelled]
            await self.cancel(unknown)
        except MPILXError as e:
            problems.append(str(e))
        if problems:
            raise MPILXError("; ".join(problems))

    def log_path(self, job_id: str) -> str:
        """Where the packaged templates write the job's output (PBS: -o names the home
        directory, and PBS calls the file <job id>.OU)."""
        name = f"{job_id}.OU" if self.system.name == "pbs" else f"dask-mpi-lx-{job_id}.log"
        return os.path.join(os.path.expanduser("~"), name)

    def describe(self) -> str:
        """"job 12 running on n1, job 13 pending"."""
        parts = []
        for i, s in self.states.items():
            where = f" on {', '.join(s.hosts)}" if s.hosts and s.state == "running" else ""
            parts.append(f"job {i} {s.state}{where}")
        return ", ".join(parts)
