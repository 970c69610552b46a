"""The user's view, in Debian's chromium driven by Playwright: hub login, the options form,
Lab, the Dask tab's card, a dashboard plot, scaling and adaptive from the SCALE dialog, a
notebook cell, a Lab reload, and a refused form value. Each test saves a screenshot."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.e2e import batch, diagnosis
from tests.e2e.hub import Hub, assert_nothing_left, error_text, jobs_of
from tests.e2e.lab_ui import (
    CARD,
    CORES,
    PLOTS,
    WORKERS,
    card_title,
    card_workers,
    login,
    open_dask_tab,
    scale_dialog,
    shot,
    shot_cards,
    wait_card_workers,
)

pytestmark = pytest.mark.e2e

USER = "alice"


@pytest.fixture(scope="module")
def lab(chromium, stack, hub: Hub):
    """alice logs in, fills the options form (6 cores) and waits for her Lab."""
    hub.stop(USER)
    page = login(chromium, stack, USER)
    page.wait_for_url("**/hub/spawn**")
    record = {"form": shot(page, "options-form")}
    page.fill("#dask-mpi-lx-cores", str(CORES))
    t0 = time.monotonic()
    page.click("#dask-mpi-lx-form ~ * button[type=submit], form button[type=submit], "
               "form input[type=submit]")
    page.wait_for_selector(".progress-bar, #progress-message", timeout=30_000)
    record["progress"] = shot(page, "spawn-progress")
    try:
        page.wait_for_url(f"**/user/{USER}/lab**", timeout=150_000)
    except Exception:
        pytest.fail(f"no Lab within 150 s; the page says {error_text(page.content())[-300:]!r}\n"
                    + diagnosis.record("browser spawn", USER), pytrace=False)
    record["seconds_to_lab"] = time.monotonic() - t0
    record["page"] = page
    yield record
    page.close()
    hub.stop(USER)


def test_login_and_options_form_lead_to_lab(lab):
    assert lab["form"].exists() and lab["progress"].exists()
    assert f"/user/{USER}/lab" in lab["page"].url
    assert lab["seconds_to_lab"] < 150


def test_dask_tab_shows_the_job_cluster_without_new(lab):
    page = lab["page"]
    open_dask_tab(page)
    assert page.locator(CARD).count() == 1
    assert re.fullmatch(r"MPI job \d+: \d+ workers?", card_title(page)), card_title(page)
    # Jupyter starts at once and the workers join meanwhile: the title follows them
    assert wait_card_workers(page, WORKERS) == WORKERS
    deadline = time.monotonic() + 15
    while not card_title(page).endswith(f": {WORKERS} workers") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert re.fullmatch(rf"MPI job \d+: {WORKERS} workers", card_title(page)), card_title(page)
    text = page.locator(CARD).first.inner_text()
    assert f"/user/{USER}/proxy/dask-mpi-lx/dashboard/status" in text  # stable, via the hub
    page.wait_for_selector(PLOTS)  # enabled plot buttons = dashboard connected
    assert page.locator(PLOTS).count() > 20
    shot(page, "dask-tab")


def test_dashboard_plot_opens_connected(lab, hub: Hub):
    from tests.e2e.hub import run_in_kernel

    out = run_in_kernel(hub, USER, "import dask.array as da; from distributed import Client; "
                        "c = Client(); print(float(da.ones((2000, 2000), chunks=250).sum()"
                        ".compute()))")
    assert out["stdout"].strip() == "4000000.0", out
    page = lab["page"]
    open_dask_tab(page)
    page.locator(PLOTS).filter(has_text="TASK STREAM").first.click()
    frame_el = page.wait_for_selector(".dask-DaskDashboard-widget iframe")
    src = frame_el.get_attribute("src")
    assert f"/user/{USER}/proxy/dask-mpi-lx/dashboard/" in src and "individual-task-stream" in src, src
    frame = frame_el.content_frame()
    frame.wait_for_selector(".bk-Figure, .bk-root, div[data-root-id]", state="attached",
                            timeout=30_000)
    time.sleep(1)
    shot(page, "dashboard-plot")


def test_scale_down_and_up_from_the_dialog(lab):
    page = lab["page"]
    open_dask_tab(page)
    scale_dialog(page, workers=2)
    assert wait_card_workers(page, 2) == 2
    shot(page, "scaled-down")
    scale_dialog(page, workers=WORKERS)
    assert wait_card_workers(page, WORKERS) == WORKERS


def test_adaptive_on_then_off(lab):
    page = lab["page"]
    open_dask_tab(page)
    scale_dialog(page, adaptive=True, minimum=1, maximum=WORKERS)
    # an idle cluster under adaptive scaling parks all but the minimum
    assert wait_card_workers(page, 1, timeout=60) == 1
    shot(page, "adaptive")
    scale_dialog(page, adaptive=False, workers=3)
    assert wait_card_workers(page, 3) == 3
    time.sleep(6)  # adaptive is off: nothing parks the idle workers any more
    assert card_workers(page) == 3
    scale_dialog(page, workers=WORKERS)
    assert wait_card_workers(page, WORKERS) == WORKERS


def put_notebook(hub: Hub, name: str, *sources: str) -> None:
    """alice's notebook ``name`` with one Python code cell per source."""
    nb = {"type": "notebook", "content": {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                   "source": source} for source in sources],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}}
    r = hub.request("PUT", f"/user/{USER}/api/contents/{name}", nb)
    assert r.status in (200, 201), r.body


def test_notebook_cell_uses_the_cluster(lab, hub: Hub):
    page = lab["page"]
    put_notebook(hub, "dask-check.ipynb",
                 "from distributed import Client; Client().submit(sum, [1, 2]).result()")
    page.goto(page.url.split("/lab")[0] + "/lab/tree/dask-check.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
    page.wait_for_selector("#jp-main-statusbar >> text=/Python 3.*Idle/", timeout=90_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:run-cell-and-select-next"]'
                 ).first.click()
    out = page.wait_for_selector(".jp-OutputArea-output", timeout=90_000)
    deadline = time.monotonic() + 30
    while out.inner_text().strip() != "3" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert out.inner_text().strip() == "3"
    shot(page, "notebook-cell")


def test_shutdown_on_the_job_card_parks_its_workers_and_the_card_stays(lab):
    """SHUTDOWN on the job's card stops the job's workers (their ranks park) and the card
    stays listed under the same name with 0 workers, also after a Lab reload; SCALE brings
    the workers back."""
    page = lab["page"]
    open_dask_tab(page)
    name = re.match(r"MPI job \d+", card_title(page)).group(0)
    page.locator(CARD).first.locator(".dask-ClusterListingItem-stop").click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if page.locator(CARD).count() == 1 and card_workers(page) == 0:
            break
        time.sleep(0.5)
    assert page.locator(CARD).count() == 1 and card_workers(page) == 0
    assert card_title(page) == f"{name}: 0 workers", card_title(page)
    shot(page, "after-shutdown")
    page.goto(page.url.split("/lab")[0] + "/lab")
    open_dask_tab(page)
    deadline = time.monotonic() + 15  # the card list refreshes every few seconds
    while card_title(page) != f"{name}: 0 workers" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert page.locator(CARD).count() == 1 and card_title(page) == f"{name}: 0 workers"
    scale_dialog(page, workers=WORKERS)
    assert wait_card_workers(page, WORKERS, timeout=60) == WORKERS
    deadline = time.monotonic() + 15
    while card_title(page) != f"{name}: {WORKERS} workers" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert card_title(page) == f"{name}: {WORKERS} workers"


def test_lab_reload_keeps_the_dashboard_connected(lab):
    page = lab["page"]
    page.goto(page.url.split("/lab")[0] + "/lab")
    open_dask_tab(page)
    page.wait_for_selector(PLOTS)
    assert page.locator(PLOTS).count() > 20
    assert page.locator("#dask-dashboard-launcher .dask-DashboardListing-inactive-title").count() == 0
    shot(page, "after-reload")


def _dmlx_jobs() -> list[str]:
    return [j.line() for j in batch.current().jobs(USER) if j.name.startswith("dmlx-")]


def card_code_runs(page, hub: Hub, card) -> tuple[str, str]:
    """In a fresh notebook, the card's ``<>`` fills the first cell; both cells run (the
    second computes on the client the first made): the first cell's text and the second's
    output."""
    put_notebook(hub, "job-cluster.ipynb", "", "client.submit(sum, [1, 2]).result()")
    page.goto(page.url.split("/lab")[0] + "/lab/tree/job-cluster.ipynb")
    shown = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
    page.wait_for_selector(f"{shown} .jp-Cell .cm-content")
    page.wait_for_selector("#jp-main-statusbar >> text=/Python 3.*Idle/", timeout=90_000)
    cells = page.locator(f"{shown} .jp-Cell")
    cells.first.click()
    open_dask_tab(page)
    card.locator(".dask-ClusterListingItem-code").click()
    deadline = time.monotonic() + 15
    while "Client(" not in cells.first.inner_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    inserted = cells.first.inner_text()
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
    out = cells.last.locator(".jp-OutputArea-output")
    deadline = time.monotonic() + 90
    while not (out.count() and out.first.inner_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    shot(page, "job-cluster-card-code")
    return inserted, out.first.inner_text().strip() if out.count() else ""


@pytest.fixture
def job_cards_closed(hub: Hub):
    """Whatever happens in the test, the job clusters NEW made are shut down after it."""
    yield
    r = hub.request("GET", f"/user/{USER}/dask/clusters")
    for card in r.json() if r.status == 200 else []:
        if card["name"].startswith("MPI jobs "):
            hub.request("DELETE", f"/user/{USER}/dask/clusters/{card['id']}", timeout=120)


def test_new_launches_a_job_cluster_that_goes_from_pending_to_running(lab, hub: Hub,
                                                                      job_cards_closed):
    """NEW submits a cluster of its own; on a full partition its card says pending, then
    shows the job running with its workers; SHUTDOWN on that card cancels the job."""
    page = lab["page"]
    open_dask_tab(page)
    system = batch.current()
    blocker = subprocess.run(batch.as_user(USER, system.blocker_argv(system.free_cores())),
                             capture_output=True, text=True, cwd="/tmp").stdout.strip()
    try:
        page.locator("#dask-dashboard-launcher").get_by_text("NEW", exact=True).click()
        new_card = page.locator(CARD).nth(1)
        new_card.wait_for(timeout=60_000)
        title = new_card.locator(".dask-ClusterListingItem-title")
        deadline = time.monotonic() + 30
        while "pending" not in title.inner_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(7)  # the cluster has asked the batch system since: the job really queues
        pending = title.inner_text()
        shot_cards(page, "dask-tab-job-pending")
    finally:
        subprocess.run(system.cancel_argv(blocker))
    assert re.match(r"MPI jobs [0-9a-f]+: 0 workers, 2 pending \(job [\w.-]+ pending\)",
                    pending), pending
    deadline = time.monotonic() + 120
    while not re.search(r": 2 workers \(job [\w.-]+ running", title.inner_text()) \
            and time.monotonic() < deadline:
        time.sleep(1)
    running = title.inner_text()
    shot_cards(page, "dask-tab-job-running")
    assert re.search(r": 2 workers \(job [\w.-]+ running on ", running), running
    assert card_workers(page) == WORKERS  # the job's own card is untouched
    assert len(_dmlx_jobs()) == 1
    # its dashboard: the card selected, a plot opens in a Lab pane through alice's server
    new_card.locator(".dask-ClusterListingItem-title").click()
    cluster_id = running.split()[2].rstrip(":")
    url_box = page.locator(".dask-URLInput-wrapper input")
    deadline = time.monotonic() + 30
    while cluster_id not in url_box.first.input_value() and time.monotonic() < deadline:
        time.sleep(0.5)
    page.locator(PLOTS).filter(has_text="TASK STREAM").first.click()
    frame_el = page.wait_for_selector(
        f".dask-DaskDashboard-widget iframe[src*='/clusters/{cluster_id}/']", timeout=30_000)
    frame_el.content_frame().wait_for_selector(".bk-Figure, .bk-root, div[data-root-id]",
                                               state="attached", timeout=30_000)
    time.sleep(1)
    shot(page, "job-cluster-dashboard-plot")
    src = frame_el.get_attribute("src")
    assert f"/user/{USER}/proxy/dask-mpi-lx/clusters/{cluster_id}/" in src, src
    inserted, result = card_code_runs(page, hub, new_card)
    assert f'client = Client("mpi-lx://{cluster_id}")' in inserted, inserted
    assert result == "3", result
    new_card.locator(".dask-ClusterListingItem-stop").click()
    deadline = time.monotonic() + 60
    while (_dmlx_jobs() or page.locator(CARD).count() > 1) and time.monotonic() < deadline:
        time.sleep(1)
    assert _dmlx_jobs() == [] and page.locator(CARD).count() == 1


def test_stop_from_lab_ends_every_rank_and_frees_the_allocation(lab, hub: Hub):
    """Under a hub, Lab's File menu offers "Hub Control Panel" in place of "Shut Down";
    "Stop My Server" there ends Jupyter, every Dask rank and the job: the allocation is free
    again and nothing of alice's is left. (Jupyter's own shutdown, what "Shut Down" calls
    where a site shows it, is tested in test_hub.py.)"""
    page = lab["page"]
    assert jobs_of(USER), "alice's job runs"
    page.click('.lm-MenuBar-itemLabel:text-is("File")')
    shot(page, "file-menu")
    with page.context.expect_page() as popup:
        page.locator('.lm-Menu-itemLabel:text-is("Hub Control Panel")').click()
    home = popup.value
    home.wait_for_selector("#stop")
    home.click("#stop")
    home.wait_for_selector("#start", timeout=60_000)
    shot(home, "stopped-from-lab")
    home.close()
    assert_nothing_left(USER)
    system = batch.current()
    assert system.free_cores() == system.node_cores(), "cores still allocated"


def test_invalid_form_value_is_shown_on_the_spawn_page(chromium, stack, hub: Hub):
    hub.stop("bob")
    page = login(chromium, stack, "bob")
    page.wait_for_url("**/hub/spawn**")
    page.fill("#dask-mpi-lx-cores", "5")
    page.fill("#dask-mpi-lx-walltime", "tomorrow")
    page.click("form button[type=submit], form input[type=submit]")
    page.wait_for_selector("text=expected HH:MM:SS")
    assert "Walltime: got 'tomorrow'" in page.inner_text("body")
    assert page.locator("#dask-mpi-lx-form").count() == 1  # the form is still there
    assert page.input_value("#dask-mpi-lx-cores") == "5"  # and what was typed is kept
    assert page.input_value("#dask-mpi-lx-walltime") == "tomorrow"
    shot(page, "form-error")
    assert hub.server("bob") is None
    page.close()
