"""The project/account field (admin list or hook), the burst settings passed to the job, and
options owned by another layer (ProfilesSpawner's "profile")."""

from __future__ import annotations

import pytest
from tornado import web
from traitlets import TraitError

from dask_mpi_lx_hooks.form import render
from dask_mpi_lx_hooks.options import Limits, OptionError, validate
from dask_mpi_lx_hooks.spawner import DaskMPIPBSSpawner, DaskMPISlurmSpawner
from tests.unit.test_hub_spawner import directives, make, submit

LIMITS = Limits(partitions=("debug",), accounts=("NCAR0001", "UCSU0012"))


# --- the account field, pure

def test_account_defaults_to_the_first_and_is_kept():
    assert validate({}, LIMITS).account == "NCAR0001"
    opts = validate({"account": "UCSU0012"}, LIMITS)
    assert opts.account == "UCSU0012" and opts.as_user_options()["account"] == "UCSU0012"


def test_without_accounts_there_is_no_account_option():
    opts = validate({}, Limits())
    assert opts.account == "" and "account" not in opts.as_user_options()
    assert validate({"account": ""}, Limits()).account == ""
    with pytest.raises(OptionError, match="got 'NCAR0001'; this hub offers no project choice"):
        validate({"account": "NCAR0001"}, Limits())


@pytest.mark.parametrize("value,message", [
    ("NCAR0002", "Project / account: got 'NCAR0002'; choose one of NCAR0001, UCSU0012"),
    ("NCAR0001\n#PBS -l select=99", "got 'NCAR0001\\n#PBS -l'...; choose one of"),
    ("x" * 65, "too long (65 characters, at most 64): 'xxxxxxxxxxxxxxxx'..."),
    (["NCAR0001", "UCSU0012"], "expected one value, got 2"),
    ({"$ne": ""}, "expected a plain value, got dict"),
])
def test_bad_accounts_are_refused_echoing_at_most_16_characters(value, message):
    with pytest.raises(OptionError) as e:
        validate({"account": value}, LIMITS)
    assert message in str(e.value)


def test_form_shows_the_account_field_only_with_accounts():
    assert 'name="account"' not in render(Limits())
    html = render(LIMITS, {"account": ["UCSU0012"]})
    assert '<option value="NCAR0001">NCAR0001</option>' in html
    assert '<option value="UCSU0012" selected>UCSU0012</option>' in html


# --- the account field, in the spawner and the scripts

@pytest.mark.parametrize("cls,line", [(DaskMPIPBSSpawner, "#PBS -A UCSU0012"),
                                      (DaskMPISlurmSpawner, "#SBATCH --account=UCSU0012")])
def test_the_chosen_account_is_rendered(cls, line):
    s = make(cls, dask_accounts=["NCAR0001", "UCSU0012"])
    s.user_options = {"cores": 4, "account": "UCSU0012"}
    assert f"\n{line}\n" in submit(s)


@pytest.mark.parametrize("cls,prefix", [(DaskMPIPBSSpawner, "#PBS -A"),
                                        (DaskMPISlurmSpawner, "#SBATCH --account")])
def test_no_account_line_without_accounts(cls, prefix):
    s = make(cls)
    s.user_options = {"cores": 4}
    assert not directives(submit(s), prefix)


def test_the_sites_req_account_still_applies_without_the_field():
    s = make(DaskMPIPBSSpawner, req_account="SITE0001")
    s.user_options = {"cores": 4}
    assert directives(submit(s), "#PBS -A") == ["#PBS -A SITE0001"]


def test_a_refused_account_is_an_http_400_and_nothing_is_submitted():
    s = make(DaskMPISlurmSpawner, dask_accounts=["NCAR0001"])
    s.user_options = {"cores": 4, "account": "OTHER"}
    sent: dict = {}
    with pytest.raises(web.HTTPError) as e:
        submit(s, sent)
    assert e.value.status_code == 400 and "choose one of NCAR0001" in e.value.log_message
    assert sent == {}


def test_the_hook_gives_each_user_their_own_list():
    s = make(DaskMPIPBSSpawner, dask_accounts=["NCAR0001"],
             dask_accounts_hook=lambda spawner: [f"P{len(spawner.user.name):07d}"])
    code = f"P{len(s.user.name):07d}"
    assert s.dask_account_choices() == (code,)
    assert f'value="{code}"' in s.options_form(s) and "NCAR0001" not in s.options_form(s)
    s.apply_dask_options({"cores": 4})
    assert s.user_options["account"] == code
    with pytest.raises(web.HTTPError, match="choose one of P"):
        s.apply_dask_options({"cores": 4, "account": "NCAR0001"})


def test_a_hook_returning_nothing_means_no_field():
    s = make(DaskMPIPBSSpawner, dask_accounts=["NCAR0001"], dask_accounts_hook=lambda s: [])
    assert 'name="account"' not in s.options_form(s)
    s.user_options = {"cores": 4}
    assert not directives(submit(s), "#PBS -A")


@pytest.mark.parametrize("bad", [["ok", "bad code"], "NCAR0001", [None], ["-A"]])
def test_a_bad_hook_answer_is_a_short_500_and_logged(bad):
    s = make(DaskMPIPBSSpawner, dask_accounts_hook=lambda spawner: bad)
    with pytest.raises(web.HTTPError) as e:
        s.apply_dask_options({"cores": 4})
    assert e.value.status_code == 500 and "tell the admins" in e.value.log_message


@pytest.mark.parametrize("bad", [["NCAR 0001"], ["x\n#PBS -q root"], [""], ["y" * 65]])
def test_bad_admin_accounts_fail_at_configuration(bad):
    with pytest.raises(TraitError, match="is not a project code"):
        make(DaskMPIPBSSpawner, dask_accounts=bad)


# --- bursting: the hub's limits reach the job's environment

BURST_NAMES = ["DASK_MPI_LX__BURST__ENABLED", "DASK_MPI_LX__BURST__MAX_JOBS",
               "DASK_MPI_LX__BURST__QUEUE", "DASK_MPI_LX__BURST__MAX_NODES"]


def submitted(spawner) -> tuple[str, dict]:
    """The script and the environment batchspawner runs sbatch/qsub with."""
    sent: dict = {}

    async def run_command(cmd, input=None, env=None):
        sent.update(script=input, env=env)
        return "4242"

    import asyncio

    spawner.run_command = run_command
    asyncio.run(spawner.submit_batch_script())
    return sent["script"], sent["env"]


@pytest.mark.parametrize("cls,prefix", [(DaskMPISlurmSpawner, "#SBATCH --export="),
                                        (DaskMPIPBSSpawner, "#PBS -v ")])
@pytest.mark.parametrize("keepvars", ["PATH", None])  # the site's list; batchspawner's default
def test_burst_settings_are_exported_to_the_job(cls, prefix, keepvars):
    s = make(cls, req_keepvars=keepvars, dask_partitions=["debug", "big"],
             dask_burst_max_jobs=3, dask_burst_max_nodes=2)
    s.user_options = {"cores": 4, "partition": "big"}
    script, env = submitted(s)
    exported = directives(script, prefix)[0][len(prefix):].split(",")
    assert all(exported.count(n) == 1 for n in BURST_NAMES), exported
    assert {n: env[n] for n in BURST_NAMES} == {
        "DASK_MPI_LX__BURST__ENABLED": "true", "DASK_MPI_LX__BURST__MAX_JOBS": "3",
        "DASK_MPI_LX__BURST__QUEUE": "big", "DASK_MPI_LX__BURST__MAX_NODES": "2"}


def test_burst_queue_set_by_the_admin_wins():
    s = make(DaskMPIPBSSpawner, dask_burst_max_jobs=1, dask_burst_queue="casper@casper-pbs")
    s.user_options = {"cores": 4}
    _, env = submitted(s)
    assert env["DASK_MPI_LX__BURST__QUEUE"] == "casper@casper-pbs"


@pytest.mark.parametrize("cls", [DaskMPISlurmSpawner, DaskMPIPBSSpawner])
def test_no_burst_settings_when_bursting_is_off(cls):
    s = make(cls, req_keepvars=None)
    s.user_options = {"cores": 4}
    script, env = submitted(s)
    assert "BURST" not in script and not [n for n in env if "BURST" in n]


@pytest.mark.parametrize("trait,value,message", [
    ("dask_burst_max_jobs", -1, "dask_burst_max_jobs: got -1; expected 0 or more"),
    ("dask_burst_max_nodes", 0, "dask_burst_max_nodes: got 0; expected 1 or more"),
    ("dask_burst_queue", "main\n#PBS -A x", "dask_burst_queue: got 'main\\n#PBS -A x'"),
])
def test_bad_burst_settings_fail_at_configuration(trait, value, message):
    with pytest.raises(TraitError) as e:
        make(DaskMPIPBSSpawner, **{trait: value})
    assert message in str(e.value)


# --- the job's log, named in the spawn error

def test_the_log_named_in_the_spawn_error_matches_the_template():
    assert make(DaskMPISlurmSpawner).dask_job_log == "~/dask-mpi-lx-{job_id}.log"
    assert make(DaskMPIPBSSpawner).dask_job_log == "~/{job_id}.OU"
    assert "#SBATCH --output={{homedir}}/dask-mpi-lx-%j.log" in make(DaskMPISlurmSpawner).batch_script
    assert "\n#PBS -o {{homedir}}/\n" in make(DaskMPIPBSSpawner).batch_script


# --- options another layer owns (ProfilesSpawner links its user_options to the child's)

def test_ignored_options_are_dropped_before_checking():
    s = make(DaskMPIPBSSpawner, dask_ignored_options=["profile"])
    s.user_options = {"profile": "casper", "cores": 4}
    assert "\n#PBS -l select=1:ncpus=4:mpiprocs=4:" in submit(s)
    assert "profile" not in s.user_options


def test_other_layers_options_are_refused_unless_listed():
    s = make(DaskMPIPBSSpawner)
    with pytest.raises(web.HTTPError, match="unknown option.*'profile'"):
        s.apply_dask_options({"profile": "casper"})
