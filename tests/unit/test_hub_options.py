"""The options form and REST user_options: parsed, bounded, quoted; bad input refused."""

import pytest

from dask_mpi_lx_hooks.form import render
from dask_mpi_lx_hooks.options import Limits, OptionError, from_form, validate
from dask_mpi_lx_hooks.wrap import launch_command

LIMITS = Limits(max_cores=8, partitions=("debug", "casper"))


def test_defaults_when_nothing_is_chosen():
    o = validate({}, LIMITS)
    assert (o.dask, o.cores, o.threads, o.walltime_hms, o.partition) == \
        (True, 6, 1, "01:00:00", "debug")
    assert o.workers == 4


def test_form_values_are_typed():
    o = from_form({"cores": ["4"], "threads": ["2"], "worker_memory": ["3GiB"],
                   "walltime": ["02:30:00"], "partition": ["casper"], "dask": ["on"],
                   "_xsrf": ["x"]}, LIMITS)
    assert (o.cores, o.threads, o.worker_memory, o.walltime, o.partition) == \
        (4, 2, 3 * 2**30, 9000, "casper")
    assert o.as_user_options()["walltime"] == "02:30:00"


def test_unchecked_dask_box_means_plain_jupyter_and_one_core_is_fine():
    o = from_form({"cores": ["1"]}, LIMITS)
    assert o.dask is False and o.cores == 1 and o.workers == 0


@pytest.mark.parametrize("field,value,message", [
    ("cores", "-1", "expected a whole number from 3 to 8"),
    ("cores", "0", "expected a whole number from 3 to 8"),
    ("cores", "2", "expected a whole number from 3 to 8"),
    ("cores", "100000", "expected a whole number from 3 to 8"),
    ("cores", "four", "expected a whole number from 3 to 8"),
    ("cores", "4; rm -rf ~", "expected a whole number"),
    ("cores", "$(id)", "expected a whole number"),
    ("threads", "0", "from 1 to 4"),
    ("worker_memory", "lots", "expected a size like 4GiB"),
    ("worker_memory", "4G`id`", "expected a size like 4GiB"),
    ("worker_memory", "1TiB", "expected 256MiB to 8GiB"),
    ("walltime", "forever", "expected HH:MM:SS"),
    ("walltime", "99:00:00", "expected 00:01:00 to 12:00"),
    ("walltime", "01:99:00", "up to 59"),
    ("partition", "debug; scancel -u root", "choose one of debug, casper"),
    ("dask", "perhaps", "expected on or off"),
])
def test_bad_values_are_refused_with_a_message(field, value, message):
    with pytest.raises(OptionError) as e:
        validate({field: value}, LIMITS)
    assert message in str(e.value)


def test_unknown_keys_are_refused():
    with pytest.raises(OptionError, match="unknown option.*'exec_prefix'.*allowed: dask"):
        validate({"exec_prefix": "id >/tmp/x;"}, LIMITS)


def test_rest_values_of_the_wrong_type_are_refused():
    with pytest.raises(OptionError, match="expected a plain value"):
        validate({"cores": {"$gt": 1}}, LIMITS)
    with pytest.raises(OptionError, match="expected a whole number"):
        validate({"cores": True}, LIMITS)
    assert validate({"cores": 5}, LIMITS).cores == 5


def test_form_html_shows_limits_and_fields():
    html = render(LIMITS)
    for name in ("dask", "cores", "threads", "worker_memory", "walltime", "partition"):
        assert f'name="{name}"' in html
    assert 'max="8"' in html
    assert '<option value="casper">casper (at most 12:00:00, 1 node)</option>' in html


def test_launch_command_quotes_everything_but_the_hub_command():
    o = validate({"cores": 4, "threads": 2, "worker_memory": "1GiB"}, LIMITS)
    cmd = launch_command("batchspawner-singleuser jupyterhub-singleuser", o, "srun",
                         ["--mca", "btl ^openib"], "/opt/x y/dask-mpi-lx")
    assert cmd == ("srun --mpi=pmix -n 4 --mca 'btl ^openib' '/opt/x y/dask-mpi-lx' launch "
                   "--nthreads 2 --memory-limit 1073741824 -- "
                   "batchspawner-singleuser jupyterhub-singleuser")
    with pytest.raises(ValueError, match="unknown launcher"):
        launch_command("x", o, "aprun")


NODES = Limits(max_cores=48, max_nodes=3, partitions=("debug", "compute"),
               cores_per_node={"compute": 8})


def test_nodes_default_to_one_and_are_kept_in_the_user_options():
    o = validate({"cores": 6}, NODES)
    assert (o.nodes, o.ranks_per_node) == (1, 6)
    assert validate({"cores": 6, "nodes": 2}, NODES).as_user_options()["nodes"] == 2


def test_cores_stay_the_total_and_are_spread_evenly_over_the_nodes():
    o = validate({"cores": 12, "nodes": "2"}, NODES)
    assert (o.cores, o.nodes, o.ranks_per_node, o.workers) == (12, 2, 6, 10)


@pytest.mark.parametrize("options,message", [
    ({"cores": 7, "nodes": 2},
     "Cores (MPI ranks): 7 cannot be spread evenly over 2 nodes; use a multiple of 2"),
    ({"cores": 3, "nodes": 3}, "each needs at least 2 (use 6 or more)"),
    ({"cores": 8, "nodes": 4}, "Nodes: got 4; expected a whole number from 1 to 3"),
    ({"cores": 8, "nodes": 0}, "Nodes: got 0; expected a whole number from 1 to 3"),
    ({"cores": 8, "nodes": "2; id"}, "Nodes: got '2; id'"),
    ({"dask": False, "cores": 2, "nodes": 2}, "without a Dask cluster the job runs on 1 node"),
    ({"cores": 12, "nodes": 1, "partition": "compute"},
     "12 per node x 1 thread(s) is 12 cores per node; queue 'compute' allows at most 8 cores "
     "per node; ask for more nodes"),
    ({"cores": 12, "nodes": 3, "threads": 4, "partition": "compute"},
     "4 per node x 4 thread(s) is 16 cores per node; queue 'compute' allows at most 8 cores per node"),
])
def test_node_shapes_that_do_not_fit_are_refused(options, message):
    with pytest.raises(OptionError) as e:
        validate(options, NODES)
    assert message in str(e.value)


def test_a_partition_without_a_per_node_bound_is_bounded_by_max_cores_only():
    assert validate({"cores": 48, "nodes": 1, "threads": 4}, NODES).ranks_per_node == 48
    assert validate({"cores": 24, "nodes": 3, "partition": "compute"}, NODES).ranks_per_node == 8


def test_one_node_is_the_default_limit():
    with pytest.raises(OptionError, match="Nodes: got 2; expected a whole number from 1 to 1"):
        validate({"cores": 6, "nodes": 2}, LIMITS)


@pytest.mark.parametrize("cores,nodes,per_node_gib", [
    (6, 1, 2 + 4 * 1),   # one node: notebook + 4 workers (as before nodes existed)
    (3, 1, 2 + 1),
    (6, 2, 3),           # node 1: notebook + 1 worker = 3; node 2: 3 workers = 3
    (12, 2, 6),          # node 1: 2 + 4 = 6; node 2: 6 workers = 6
    (4, 2, 2),           # node 1: notebook only; node 2: 2 workers
    (18, 3, 6),          # node 1: 2 + 4; nodes 2, 3: 6 workers
])
def test_memory_per_node_is_the_busiest_node(cores, nodes, per_node_gib):
    o = validate({"cores": cores, "nodes": nodes, "worker_memory": "1GiB"}, NODES)
    assert o.memory_per_node(2 * 2**30) == per_node_gib * 2**30


def test_memory_per_node_with_dask_off_is_the_notebook():
    o = validate({"dask": False, "cores": 1}, NODES)
    assert o.memory_per_node(2 * 2**30) == 2 * 2**30


def test_long_values_are_refused_and_never_echoed_whole():
    for field in ("cores", "nodes", "threads", "worker_memory", "walltime", "partition", "dask"):
        with pytest.raises(OptionError) as e:
            validate({field: "7" * 5_000_000}, NODES)
        message = str(e.value)
        assert "too long (5000000 characters, at most 64)" in message and len(message) < 120
    assert len("9" * 60 + "GiB") < 64
    with pytest.raises(OptionError, match="expected 256MiB to 8GiB"):
        validate({"worker_memory": "9" * 60 + "GiB"}, NODES)


def test_a_400_digit_memory_is_an_option_error_not_an_overflow():
    with pytest.raises(OptionError, match="Memory per worker: too long"):
        validate({"worker_memory": "9" * 400}, NODES)
    with pytest.raises(OptionError, match="Memory per worker: too long"):
        validate({"worker_memory": 10**400}, NODES)   # a JSON number that long
    with pytest.raises(OptionError, match="Memory per worker: too long"):
        validate({"worker_memory": 10**5000}, NODES)  # str() of it would raise ValueError
    with pytest.raises(OptionError, match="expected 256MiB"):
        validate({"worker_memory": "99999999999999999999.5TiB"}, NODES)


def test_many_or_long_unknown_keys_are_not_echoed_whole():
    with pytest.raises(OptionError) as e:
        validate({"x" * 1_000_000: 1, **{f"k{i}": 1 for i in range(1000)}}, NODES)
    assert len(str(e.value)) < 250 and "..." in str(e.value)
    with pytest.raises(OptionError, match="must be an object"):
        validate(["cores", 6], NODES)


def test_form_shows_nodes_only_where_more_than_one_is_allowed():
    assert 'name="nodes"' not in render(LIMITS)
    html = render(NODES)
    assert 'name="nodes" min="1" max="3" value="1"' in html
    assert "compute (at most 12:00:00, 3 nodes, 8 cores per node)" in html
    assert "over every node" in html
    assert 'value="2"' in render(NODES, {"nodes": ["2"], "cores": ["6"]})
    assert from_form({"cores": ["6"], "nodes": ["2"], "dask": ["on"]}, NODES).nodes == 2


def test_launch_command_on_several_nodes():
    o = validate({"cores": 6, "nodes": 2}, NODES)
    assert launch_command("S", o, "mpiexec").startswith("mpiexec -n 6 -ppn 3 dask-mpi-lx launch ")
    assert launch_command("S", o, "srun").startswith(
        "srun --mpi=pmix -n 6 --ntasks-per-node 3 dask-mpi-lx launch ")
    assert launch_command("S", o, "mpirun").startswith(
        "mpirun --enable-recovery -np 6 dask-mpi-lx launch ")  # slots from the allocation
    one = validate({"cores": 6}, NODES)
    assert launch_command("S", one, "mpiexec").startswith("mpiexec -n 6 dask-mpi-lx launch ")


def test_pals_gets_ppn_on_one_node_and_depth_binding_with_threads():
    one = validate({"cores": 6}, NODES)
    assert launch_command("S", one, "pals").startswith("mpiexec -n 6 -ppn 6 dask-mpi-lx launch ")
    two = validate({"cores": 8, "nodes": 2, "threads": 2}, NODES)
    assert launch_command("S", two, "pals").startswith(
        "mpiexec -n 8 -ppn 4 --cpu-bind depth -d 2 dask-mpi-lx launch --nthreads 2 ")
    assert "--cpu-bind" not in launch_command("S", two, "mpiexec")   # MPICH's Hydra has none


QUEUES = Limits(max_cores=64, max_nodes=1, partitions=("short", "long"), max_walltime=4 * 3600,
                max_worker_memory=32 * 2**30, notebook_memory=4 * 2**30,
                queue_walltime={"long": 24 * 3600, "short": 3600}, queue_nodes={"long": 4},
                memory_per_node={"long": 64 * 2**30})


@pytest.mark.parametrize("options,message", [
    ({"partition": "short", "walltime": "02:00:00"},
     "Walltime: got '02:00:00'; expected 00:01:00 to 01:00:00, the most queue 'short' allows"),
    ({"partition": "long", "walltime": "24:01:00"},
     "Walltime: got '24:01:00'; expected 00:01:00 to 24:00:00, the most queue 'long' allows"),
    ({"partition": "long", "cores": 10, "nodes": 5},
     "Nodes: got 5; expected a whole number from 1 to 4, the most queue 'long' allows"),
    ({"partition": "short", "cores": 4, "nodes": 2},
     "Nodes: got 2; expected a whole number from 1 to 1"),
    ({"partition": "long", "cores": 6, "worker_memory": "16GiB"},
     "Memory per worker: 6 rank(s) per node need 68GiB per node; queue 'long' allows at most "
     "64GiB per node"),
])
def test_each_queue_has_its_own_limits(options, message):
    with pytest.raises(OptionError) as e:
        validate(options, QUEUES)
    assert str(e.value) == message


def test_requests_within_a_queues_own_limits_pass():
    o = validate({"partition": "long", "cores": 16, "nodes": 4, "walltime": "24:00:00",
                  "worker_memory": "16GiB"}, QUEUES)
    assert (o.nodes, o.walltime) == (4, 24 * 3600)
    assert o.memory_per_node(QUEUES.notebook_memory) <= QUEUES.memory_per_node["long"]
    assert validate({"partition": "short"}, QUEUES).walltime == 3600   # the default, capped
    assert validate({"partition": "long", "cores": 3, "worker_memory": "32GiB"}, QUEUES).nodes == 1
    html = render(QUEUES)
    assert 'name="nodes" min="1" max="4"' in html     # the most any queue allows
    assert ">long (at most 24:00:00, 4 nodes, 64GiB per node)</option>" in html
    assert ">short (at most 01:00:00, 1 node)</option>" in html
