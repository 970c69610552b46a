"""Playwright in Debian's chromium, for the end-to-end tests: the browser, the hub login,
the Dask tab's cluster card and its SCALE dialog, and screenshots."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.conftest import ROOT

CORES = 6
WORKERS = CORES - 2
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "artifacts" / "screenshots"))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="dask-dashboard-launcher"]'
CARD = "#dask-dashboard-launcher li.dask-ClusterListingItem"
PLOTS = "#dask-dashboard-launcher .dask-DashboardListing-item button:not([disabled])"
DIALOG = ".jp-Dialog"


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def shot_cards(page, name: str) -> Path:
    """A screenshot of the Dask tab's cluster list alone (the cards scrolled into view)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    panel = page.locator("#dask-dashboard-launcher").bounding_box()
    widen = 480 - panel["width"] if panel and panel["width"] < 480 else 0
    _drag(page, handle, widen)  # whole card titles; the layout goes back afterwards
    try:
        page.locator(CARD).last.scroll_into_view_if_needed()
        page.locator("#dask-dashboard-launcher .dask-ClusterListing").first.screenshot(
            path=str(path))
    finally:
        _drag(page, handle, -widen)
    return path


def _drag(page, handle, dx: float) -> None:
    box = handle.bounding_box()
    if not dx or not box:
        return
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=5)
    page.mouse.up()


def login(browser, stack, user: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(f"{stack['hub_url']}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", stack["user_password"])
    page.click("#login_submit")
    return page


def open_dask_tab(page, attempts: int = 4):
    """Show the Dask tab's panel. Lab restores the last layout while it loads, so a tab that
    looks current may still be collapsed a moment later: click until the card shows."""
    tab = page.wait_for_selector(TAB)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    for _ in range(attempts):
        try:
            page.wait_for_selector(CARD, timeout=15_000)
            break
        except Exception:  # playwright's TimeoutError: the panel is still hidden
            tab.click()
    page.wait_for_selector(CARD)
    page.locator(CARD).first.scroll_into_view_if_needed()


def card_title(page) -> str:
    return page.locator(f"{CARD} .dask-ClusterListingItem-title").first.inner_text().strip()


def card_workers(page) -> int:
    text = page.locator(CARD).first.inner_text()
    return int(re.search(r"Number of Workers:\s*(\d+)", text).group(1))


def wait_card_workers(page, n: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while card_workers(page) != n and time.monotonic() < deadline:
        time.sleep(0.25)
    return card_workers(page)


def scale_dialog(page, workers: int | None = None, adaptive: bool | None = None,
                 minimum: int | None = None, maximum: int | None = None) -> None:
    page.locator(CARD).first.locator(".dask-ClusterListingItem-scale").click()
    dialog = page.wait_for_selector(DIALOG)
    inputs = page.locator(f"{DIALOG} input.dask-ScalingInput")
    checkbox = page.locator(f"{DIALOG} input.dask-ScalingCheckbox")
    if adaptive is not None and checkbox.is_checked() != adaptive:
        checkbox.click()
    if workers is not None:
        inputs.nth(0).fill(str(workers))
    if minimum is not None:
        inputs.nth(1).fill(str(minimum))
    if maximum is not None:
        inputs.nth(2).fill(str(maximum))
    page.click(f"{DIALOG} button.jp-mod-accept")
    dialog.wait_for_element_state("hidden")


