"""`dask-mpi-lx serve` under real Open MPI, without a batch system: a first job with the
scheduler, a second joining it, the lease that ends them with nobody attached, and bad
input that ends the job with one clear line instead of a hang."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from dask_mpi_lx.runtime.cluster_dir import ClusterDir
from dask_mpi_lx.runtime.tls import new_job_tls, security_for
from tests import mpirun

pytestmark = pytest.mark.mpi


def serve(cmd: list[str], directory, *extra: str) -> list[str]:
    return [*cmd, "serve", "--cluster-dir", str(directory), *extra]


def until(check, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return value


async def worker_names(address: str, tls) -> list[str]:
    from distributed.core import rpc

    async with rpc(address, connection_args=security_for(tls).get_connection_args("client")) as r:
        info = await r.identity()
    return sorted(str(w["name"]) for w in info["workers"].values())


def test_two_jobs_serve_one_cluster_and_end_with_the_lease(dask_mpi_lx_cmd, tmp_path):
    tls = new_job_tls()
    directory = ClusterDir.create(tmp_path / "clusters", "c", tls)
    # the lease counts from the first attach; before it, the attach grace
    first = mpirun.start(serve(dask_mpi_lx_cmd, directory.path, "--lease", "1s",
                               "--attach-grace", "12s"), np=3)
    second = mpirun.start(serve(dask_mpi_lx_cmd, directory.path, "--join"), np=3)
    try:
        contact = until(directory.read_contact, 90)
        t_contact = time.monotonic()
        assert contact and contact.address.startswith("tls://"), first.poll()
        names = until(lambda: (n := asyncio.run(worker_names(contact.address, tls)))
                      and len(n) == 3 and n, 90)
        # nobody attaches: the first job ends after the grace (not the 1s lease), its
        # scheduler closes the joining job's workers, and that job ends too
        rc_first = first.wait(60)
        lived = time.monotonic() - t_contact
        rc_second = second.wait(60)
    finally:
        for proc in (first, second):
            mpirun.stop_group(proc)
    out_first, err_first = first.communicate()
    out_second, err_second = second.communicate()
    joined, own = names[:2], names[2:]
    assert own == ["rank-2"], names  # the first job: keeper, scheduler, one worker
    assert [n.rsplit("-rank-", 1)[1] for n in joined] == ["1", "2"], names
    assert all(n.startswith("job-local-") for n in joined), names  # named by their job
    assert rc_first == 0 and rc_second == 0, err_first[-2000:] + err_second[-2000:]
    assert "no cluster object attached within 12s of the start" in err_first, err_first[-2000:]
    assert lived > 7, lived  # the grace, not the 1s lease, counted before any attach
    assert "ending job local-" in err_second and "the cluster's scheduler is ending" in err_second
    assert directory.read_contact() is None  # the first job took its address back
    for err in (err_first, err_second):
        assert "Traceback" not in err, err


async def http_get(target: tuple[str, int], context, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(*target, ssl=context,
                                                   server_hostname="dask-internal")
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data


def test_the_dashboard_beside_the_scheduler_opens_to_the_clusters_key_only(dask_mpi_lx_cmd,
                                                                          tmp_path):
    import ssl

    from dask_mpi_lx.jobs.dashboard_bridge import parse_target
    from dask_mpi_lx.runtime.dashboard_mtls import client_context

    tls = new_job_tls()
    directory = ClusterDir.create(tmp_path / "clusters", "c", tls)
    job = mpirun.start(serve(dask_mpi_lx_cmd, directory.path, "--attach-grace", "60s"), np=3)
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS, but no key of this cluster
    stranger.check_hostname, stranger.verify_mode = False, ssl.CERT_NONE
    try:
        contact = until(directory.read_contact, 90)
        assert contact, job.poll()
        target = parse_target(contact.dashboard)
        assert target and target[0] == contact.address.split("://")[1].rsplit(":", 1)[0], contact
        owner = asyncio.run(http_get(target, client_context(tls, str(tmp_path)),
                                     "/individual-plots.json"))
        try:
            refused = asyncio.run(http_get(target, stranger, "/individual-plots.json"))
        except (ssl.SSLError, ConnectionError) as e:
            refused = repr(e).encode()
        job.send_signal(signal.SIGTERM)  # as scancel does: the job ends in order
        job.wait(60)
    finally:
        mpirun.stop_group(job)
    assert owner.startswith(b"HTTP/1.1 200") and b"Task Stream" in owner, owner[:300]
    assert b"200" not in refused and (b"CERTIFICATE_REQUIRED" in refused or not refused), refused


@pytest.mark.parametrize("extra, expected", [
    ((), "no cluster directory at"),
    (("--join", "--join-timeout", "2s"), "no cluster directory at"),
])
def test_a_missing_cluster_directory_ends_the_job_with_one_clear_line(dask_mpi_lx_cmd, tmp_path,
                                                                      extra, expected):
    result = mpirun.run(serve(dask_mpi_lx_cmd, tmp_path / "missing", *extra), np=3, timeout=90)
    assert result.returncode != 0
    assert expected in result.stderr, result.describe()
    assert "Traceback" not in result.stderr


def test_a_joining_job_without_a_scheduler_gives_up_after_its_timeout(dask_mpi_lx_cmd, tmp_path):
    directory = ClusterDir.create(tmp_path / "clusters", "c", new_job_tls())
    result = mpirun.run(serve(dask_mpi_lx_cmd, directory.path, "--join", "--join-timeout", "3s"),
                        np=3, timeout=90)
    assert result.returncode == 1
    assert "no scheduler address appeared" in result.stderr, result.describe()


def test_bad_serve_flags_are_refused_before_mpi_starts(dask_mpi_lx_cmd, tmp_path):
    import subprocess

    out = subprocess.run(serve(dask_mpi_lx_cmd, tmp_path, "--lease", "soon"), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "mpi-lx.jobs.lease" in out.stderr and "Traceback" not in out.stderr


def test_a_job_cluster_serves_no_dashboard_whatever_the_config_says(dask_mpi_lx_cmd, tmp_path):
    """mpi-lx.dashboard-address set (an open TCP page on the node's network): ignored by
    serve; and a contact that only this host reaches is said in the log."""
    import socket

    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = ClusterDir.create(tmp_path / "clusters", "c", new_job_tls())
    proc = mpirun.start(serve(dask_mpi_lx_cmd, directory.path, "--lease", "3s",
                              "--attach-grace", "3s"), np=3,
                        env={"DASK_MPI_LX__DASHBOARD_ADDRESS": f"0.0.0.0:{port}"})
    try:
        contact = until(directory.read_contact, 90)
        assert contact, proc.poll()
        listening = [c for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        rc = proc.wait(60)
    finally:
        mpirun.stop_group(proc)
    _, err = proc.communicate()
    assert listening == [] and rc == 0, err[-2000:]
    if contact.address.startswith("tls://127."):
        assert "which only this host reaches" in err, err[-2000:]
