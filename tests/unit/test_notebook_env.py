from dask_mpi_lx.launcher.notebook_env import (
    JobCluster,
    child_environment,
    dashboard_link_template,
    job_dask_config,
)

CLUSTER = JobCluster(job_id="123", address="tls://10.0.0.1:8786", dashboard=("127.0.0.1", 8787),
                     n_workers=4, tls_paths={"cert": "/j/c.pem", "key": "/j/k.pem"})


def test_dashboard_link_behind_hub_is_stable_across_jobs():
    assert dashboard_link_template(("127.0.0.1", 1), "/user/alice/") == \
        "/user/alice/proxy/dask-mpi-lx/dashboard/status"
    assert dashboard_link_template(("node7", 2), "/user/alice") == \
        "/user/alice/proxy/dask-mpi-lx/dashboard/status"


def test_dashboard_link_without_hub_is_plain_http():
    assert dashboard_link_template(("127.0.0.1", 1), None) == "http://127.0.0.1:{port}/status"
    assert dashboard_link_template(None, "/user/a/") is None


def test_job_config_has_address_tls_and_labextension_entry():
    cfg = job_dask_config(CLUSTER, "/user/alice/")
    assert cfg["scheduler-address"] == "tls://10.0.0.1:8786"
    comm = cfg["distributed"]["comm"]
    assert comm["require-encryption"] is True
    assert comm["tls"]["client"] == {"cert": "/j/c.pem", "key": "/j/k.pem"}
    lab = cfg["labextension"]
    assert (lab["factory"]["module"], lab["factory"]["class"]) == (
        "dask_mpi_lx.cluster.lab_factory", "lab_cluster")
    assert lab["default"] == {"workers": None, "adapt": None}
    assert lab["initial"] == [{"name": "MPI job 123: 4 workers"}]
    assert cfg["mpi-lx"]["job"] == {
        "id": "123", "scheduler-address": "tls://10.0.0.1:8786", "dashboard": ["127.0.0.1", 8787],
        "dashboard-link": "/user/alice/proxy/dask-mpi-lx/dashboard/status"}


def test_job_config_leaves_the_global_dashboard_link_alone():
    """A LocalCluster (or a batch-mode MPICluster) in a kernel links to its own dashboard."""
    for prefix in ("/user/alice/", None):
        cfg = job_dask_config(CLUSTER, prefix)
        assert "dashboard" not in cfg["distributed"]
    assert job_dask_config(CLUSTER, None)["mpi-lx"]["job"]["dashboard-link"] == \
        "http://127.0.0.1:8787/status"


def test_child_environment_scrubs_mpi_keeps_the_rest():
    env = child_environment({"OMPI_X": "1", "PMIX_Y": "2", "JUPYTERHUB_API_TOKEN": "t"},
                            "tls://a:1", "/j/dask")
    assert env == {"JUPYTERHUB_API_TOKEN": "t", "DASK_SCHEDULER_ADDRESS": "tls://a:1",
                   "DASK_CONFIG": "/j/dask"}
