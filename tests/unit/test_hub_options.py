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
    assert 'max="8"' in html and '<option value="casper">casper</option>' in html


def test_launch_command_quotes_everything_but_the_hub_command():
    o = validate({"cores": 4, "threads": 2, "worker_memory": "1GiB"}, LIMITS)
    cmd = launch_command("batchspawner-singleuser jupyterhub-singleuser", o, "srun",
                         ["--mca", "btl ^openib"], "/opt/x y/dask-mpi-lx")
    assert cmd == ("srun --mpi=pmix -n 4 --mca 'btl ^openib' '/opt/x y/dask-mpi-lx' launch "
                   "--nthreads 2 --memory-limit 1073741824 -- "
                   "batchspawner-singleuser jupyterhub-singleuser")
    with pytest.raises(ValueError, match="unknown launcher"):
        launch_command("x", o, "aprun")
