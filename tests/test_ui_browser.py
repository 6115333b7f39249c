"""The Dagster UI as a person uses it: real ``dagster dev`` (webserver + daemon) on the simulator,
driven by headless Chromium through Playwright; and ``make dev``'s start and Ctrl-C.

The browser test needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` Python
package (the ``[dev]`` extras); ``.ci/run`` installs both, so it skips only on a machine that
lacks them. Playwright drives the system browser: ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import dagster as dg

from support import CHROMIUM, CHROMIUM_ARGS, CLOCK, all_assets_and_checks, browser_missing
from variance_pipeline.demo import free_port
from variance_pipeline.simulator import SimulatorServer

PROJECT = Path(__file__).resolve().parents[1]
def location_assets() -> list[str]:
    """Every asset of the code location ("Materialize all" launches them all); loaded when the
    test runs, not when the suite is collected."""
    return sorted(
        key.to_user_string() for a in all_assets_and_checks() if type(a) is dg.AssetsDefinition for key in a.keys
    )
PARTITION = "2025-11-25"  # the current session at CLOCK, so the snapshots land too
RUN_TIMEOUT_S = 150

# Launch a program with SIGINT/SIGTERM at their defaults even when this process inherited them
# ignored (CI shells start background jobs that way): dagster dev then shuts down on a SIGINT.
EXEC_WITH_DEFAULT_SIGNALS = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.browser]


def wait_until_answers(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_group(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Ctrl-C to the whole process group, then SIGKILL for anything still there."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGINT:
            # dagster dev has exited; sweep any child it left in its group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


def group_members(pgid: int) -> list[str]:
    """Live processes of a group (zombies waiting to be reaped by init are not running)."""
    lines = subprocess.run(["ps", "-ww", "-eo", "pgid=,pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 3) for line in lines.splitlines()]
    return [" ".join(row) for row in rows if row[0] == str(pgid) and not row[2].startswith("Z")]


def wait_group_empty(pgid: int, timeout: float = 10.0) -> bool:
    """A SIGKILLed process stays listed until the kernel has torn it down: poll briefly."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``dg dev`` (as ``make dev`` runs it) on a fresh DAGSTER_HOME against a simulator with a fixed clock."""
    if reason := browser_missing():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("ui")
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log = root / "dagster-dev.log"
    with SimulatorServer(port=0, now=CLOCK) as simulator:
        env = {
            **os.environ,
            "VARIANCE_SOURCE": "simulator",
            "VARIANCE_SIMULATOR_URL": simulator.url,
            "VARIANCE_DATA_DIR": str(data),
            "VARIANCE_NOW": CLOCK.isoformat(),
            "VARIANCE_WATCHLIST": "SPY,QQQ,/ES",
            "DAGSTER_HOME": str(home),
        }
        for variable in ("TASTYTRADE_API_URL", "YAHOO_CHART_URL"):
            env.pop(variable, None)
        env["VIRTUAL_ENV"] = sys.prefix
        dg_cli = str(Path(sys.executable).with_name("dg"))
        command = [dg_cli, "dev", "--target-path", str(PROJECT), "--host", "127.0.0.1", "--port", str(port)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", EXEC_WITH_DEFAULT_SIGNALS, *command],
                cwd=home,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(f"{url}/server_info", process, log)
            yield url, data
        finally:
            stop_group(process)
            assert wait_group_empty(process.pid), f"dagster dev left processes behind: {group_members(process.pid)}"


def test_materialize_one_partition_from_the_ui(dagster_ui: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    url, data = dagster_ui
    assets = location_assets()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 2560, "height": 1600})
        page.set_default_timeout(30_000)
        # A fresh DAGSTER_HOME greets with "Join the Dagster community": press Skip whenever it shows.
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda _: page.get_by_role("button", name="Skip").click(),
        )
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("link", name="Lineage", exact=False).first.click()
            expect(page.get_by_text("Global asset lineage")).to_be_visible()

            # The asset graph: groups start collapsed; expand them once the graph has laid out
            # (the menu item toggles, so press it once) and zoom in until every name is whole.
            nodes = page.locator("foreignObject > *")
            expect(nodes.filter(has_text="transform").first).to_be_visible()
            # The community dialog can appear late and close the menu under the click: dismiss it
            # first when it shows, then open the menu (again if the dialog closed it).
            try:
                page.get_by_role("button", name="Skip").click(timeout=8_000)
            except PlaywrightTimeout:
                pass
            for attempt in range(3):
                page.get_by_role("button", name="settings", exact=True).click()
                try:
                    page.get_by_role("menuitem", name="Expand all groups").click(timeout=10_000)
                    break
                except PlaywrightTimeout:
                    if attempt == 2:
                        raise
            expect(nodes.filter(has_text="positions").first).to_be_attached(timeout=20_000)
            # The assets do not all fit whole at one zoom level: every name must show at some level.
            seen: set[str] = set()
            for _ in range(10):
                seen |= set(" ".join(nodes.all_inner_texts()).split())
                if all(asset in seen for asset in assets):
                    break
                page.get_by_role("button", name="zoom_in").click()
                page.wait_for_timeout(500)
            # The graph draws only what is in view at a readable zoom: the names it never showed
            # whole are looked up in the asset catalog once the run is done.
            unseen = [a for a in assets if a not in seen]
            assert len(unseen) < len(assets) / 2, sorted(seen)
            page.screenshot(path=str(tmp_path / "graph.png"))

            # Materialize all... -> one partition -> launch.
            page.get_by_role("button", name="Materialize all…").click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text(f"Launch runs to materialize {len(assets)} assets")).to_be_visible()
            # Older partitions than the last 90 days (by the real date) are hidden until asked for.
            try:
                dialog.get_by_text("Show all partitions").click(timeout=5_000)
            except PlaywrightTimeout:
                pass
            partitions = dialog.get_by_placeholder("ex: 2010-01-04", exact=False)
            partitions.fill(PARTITION)
            partitions.press("Enter")
            expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
            dialog.get_by_role("button", name="Launch 1 run").click()

            # The toast links to the run; its page turns to Success when the daemon ran it.
            expect(page.get_by_text("Launched run")).to_be_visible()
            page.get_by_role("link", name="View", exact=True).click()
            page.wait_for_url("**/runs/*")
            run_id = page.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
            expect(page.get_by_text(f"partition: {PARTITION}")).to_be_visible()
            outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
            expect(outcome).to_be_visible(timeout=RUN_TIMEOUT_S * 1000)
            assert outcome.inner_text() == "Success", f"run {run_id} ended {outcome.inner_text()}"
            page.screenshot(path=str(tmp_path / "run.png"))

            page.goto(f"{url}/assets", wait_until="domcontentloaded")
            for name in unseen:
                # A catalog row's link reads its icon's name and the asset's: "positions positions".
                expect(page.get_by_role("link", name=re.compile(rf"(^|\s){re.escape(name)}$")).first).to_be_visible()

            # The chart the warehouse asset attached shows up in its metadata.
            page.goto(f"{url}/assets/warehouse", wait_until="domcontentloaded")
            chart_row = page.locator("tr", has_text="vol_chart_path")
            expect(chart_row).to_be_visible()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshots in {tmp_path}")
            raise
        finally:
            browser.close()

    # GraphQL only confirms what the UI showed.
    run = graphql(
        url,
        "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status tags { key value } } } }",
        {"id": run_id},
    )["runOrError"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (run["status"], tags.get("dagster/partition"), tags.get("dagster/from_ui")) == ("SUCCESS", PARTITION, "true")
    assert (data / "reports" / f"vol_chart_{PARTITION}.png").read_bytes().startswith(b"\x89PNG")
    # The schedule is there for the Automation page.
    schedules = graphql(
        url,
        '{ schedulesOrError(repositorySelector: {repositoryName: "__repository__", '
        'repositoryLocationName: "variance_pipeline"}) { ... on Schedules { results { name } } } }',
    )["schedulesOrError"]["results"]
    assert "eod_schedule" in [s["name"] for s in schedules]


def test_make_dev_starts_both_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """``python -m variance_pipeline.dev`` (what ``make dev`` runs): the UI answers with the
    schedule, and a Ctrl-C (SIGINT to its process group) leaves no process of either behind."""
    sim_port, ui_port = free_port(), free_port()
    env = {
        **os.environ,
        "VARIANCE_SOURCE": "simulator",
        "VARIANCE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "VARIANCE_WATCHLIST": "SPY",
    }
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", EXEC_WITH_DEFAULT_SIGNALS, sys.executable, "-m", "variance_pipeline.dev",
             "--port", str(sim_port), "--ui-port", str(ui_port)],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{ui_port}"
    try:
        wait_until_answers(f"{url}/server_info", process, log)
        assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
        schedules = graphql(
            url,
            '{ schedulesOrError(repositorySelector: {repositoryName: "__repository__", '
            'repositoryLocationName: "variance_pipeline"}) { ... on Schedules { results { name } } } }',
        )["schedulesOrError"]["results"]
        assert [s["name"] for s in schedules] == ["eod_schedule"]
        deadline = time.monotonic() + 10
        while f"Dagster UI on {url}" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"Dagster UI on {url}" in log.read_text()
        # No warning of the project's making on start: the location name matches its [tool.dg]
        # name, dg dev (not the superseded dagster dev) runs in its own venv, and no dagster.yaml
        # sits in the folder the code server starts in.
        started = log.read_text()
        for warning in ("does not match the name", "SupersessionWarning", "Found a dagster instance configuration",
                        "virtual environment does not match"):
            assert warning not in started, started[-3000:]

        def tree() -> list[str]:
            """Every process whose command line names one of this test's ports or folders."""
            lines = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
            marks = (str(tmp_path), f"--port {sim_port}", f"--port {ui_port}", f"-p {ui_port}")
            return [line for line in lines if any(m in line for m in marks) and "ps -eo" not in line]

        assert len(tree()) >= 4, tree()  # dev.py, the simulator, dagster dev and its services
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=90) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 10
        while tree() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert tree() == []
        for port in (sim_port, ui_port):
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        if process.poll() is None:  # a failed assertion above: dev.py still forwards the Ctrl-C
            stop_group(process, grace=90)
