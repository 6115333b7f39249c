"""``make dev``: the simulator and the Dagster UI together; Ctrl-C stops both.

``dagster dev`` runs in its own process group and gets exactly one SIGINT from here, whether
the interrupt came from the terminal (Ctrl-C reaches this whole process group), from ``kill``
(SIGTERM) or from a closed terminal (SIGHUP): a second SIGINT would cut its own shutdown short
and leave the webserver or the daemon behind. If it has not stopped within a grace period its
whole group is killed, so nothing outlives ``make dev``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from variance_pipeline.demo import prepare_dagster_home, start_simulator
from variance_pipeline.settings import PROJECT_ROOT, ConfigurationError, Settings

SHUTDOWN_GRACE_SECONDS = 60.0


def _default_signals() -> None:
    """In the child before exec: take SIGINT/SIGTERM as Python normally does, even if this
    process was started with them ignored (``make dev &``), so dagster dev can shut down cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_process_group(process: subprocess.Popen, grace: float = SHUTDOWN_GRACE_SECONDS) -> int:
    """SIGINT to the group led by ``process`` (a Ctrl-C), then SIGKILL to the group after ``grace``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"dagster dev did not stop within {grace:.0f} s: killing it", file=sys.stderr, flush=True)
    # Anything left in the group (a stuck run worker, a code server) goes too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return process.wait()


def wait_for_ui(url: str, process: subprocess.Popen, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="simulator port")
    parser.add_argument("--ui-port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("--host", default="127.0.0.1", help="address the UI listens on")
    args = parser.parse_args(argv)

    env = {**os.environ, "VARIANCE_SOURCE": os.environ.get("VARIANCE_SOURCE", "simulator")}
    if env["VARIANCE_SOURCE"] == "simulator":
        env["VARIANCE_SIMULATOR_URL"] = f"http://127.0.0.1:{args.port}"
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    home = prepare_dagster_home(settings)
    env["DAGSTER_HOME"] = str(home)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in handled}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    simulator: subprocess.Popen | None = None
    ui: subprocess.Popen | None = None
    try:
        if settings.source == "simulator":
            # The simulator's clock follows the pipeline's (VARIANCE_NOW) so snapshots agree.
            clock = ["--now", settings.now_override.isoformat()] if settings.now_override else []
            try:
                simulator = start_simulator(args.port, clock)
            except RuntimeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"simulator on {env['VARIANCE_SIMULATOR_URL']}", flush=True)
        dg_cli = str(Path(sys.executable).with_name("dg"))
        url = f"http://{args.host}:{args.ui_port}"
        # `dg dev` on the project (its [tool.dg] names the code location, so the name matches);
        # VIRTUAL_ENV names the venv it already runs in, so dg does not warn that they differ.
        ui = subprocess.Popen(
            [dg_cli, "dev", "--target-path", str(PROJECT_ROOT), "--host", args.host, "--port", str(args.ui_port)],
            env={**env, "VIRTUAL_ENV": str(Path(sys.prefix))},
            cwd=home,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
        print(f"starting the Dagster UI (DAGSTER_HOME={home}, data in {settings.data_dir_shown})...", flush=True)
        if wait_for_ui(url, ui):
            print(f"Dagster UI on {url} - Ctrl-C stops it and the simulator", flush=True)
        return ui.wait()
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        # Ignore further interrupts while cleaning up: a second Ctrl-C must not leave orphans.
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)
        if ui is not None:
            stop_process_group(ui)
        if simulator is not None:
            simulator.terminate()
            try:
                simulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
