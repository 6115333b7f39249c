"""``make dev``: the simulator and the Dagster UI together; Ctrl-C stops both."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from variance_pipeline.demo import prepare_dagster_home, start_simulator
from variance_pipeline.settings import ConfigurationError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="simulator port")
    parser.add_argument("--ui-port", type=int, default=3000, help="Dagster UI port")
    args = parser.parse_args(argv)

    env = {**os.environ, "VARIANCE_SOURCE": os.environ.get("VARIANCE_SOURCE", "simulator")}
    simulator = None
    if env["VARIANCE_SOURCE"] == "simulator":
        env["VARIANCE_SIMULATOR_URL"] = f"http://127.0.0.1:{args.port}"
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env["DAGSTER_HOME"] = str(prepare_dagster_home(settings))
    if settings.source == "simulator":
        simulator = start_simulator(args.port)
        print(f"simulator on {env['VARIANCE_SIMULATOR_URL']}", flush=True)
    dagster = str(Path(sys.executable).with_name("dagster"))
    print(f"Dagster UI on http://127.0.0.1:{args.ui_port} (DAGSTER_HOME={env['DAGSTER_HOME']}); Ctrl-C stops", flush=True)
    ui = subprocess.Popen(
        [dagster, "dev", "-m", "variance_pipeline.definitions", "-h", "127.0.0.1", "-p", str(args.ui_port)], env=env
    )
    try:
        return ui.wait()
    except KeyboardInterrupt:
        ui.terminate()
        ui.wait(timeout=30)
        return 0
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
