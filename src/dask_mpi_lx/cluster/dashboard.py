"""The dashboard link MPICluster shows: the job's (through the user's Jupyter proxy behind
a hub) for the job's own cluster, distributed's usual link for any other."""

from __future__ import annotations

from ..config import JOB_DASHBOARD_LINK, JOB_SCHEDULER_ADDRESS, job_setting


def job_dashboard_link(scheduler_address: str | None) -> str | None:
    """The link the launcher wrote for this job when ``scheduler_address`` is the job's
    scheduler, else None (the caller falls back to ``distributed.dashboard.link``)."""
    job_address = job_setting(JOB_SCHEDULER_ADDRESS)
    if not scheduler_address or not job_address or scheduler_address != job_address:
        return None
    return job_setting(JOB_DASHBOARD_LINK) or None
