"""Deployment files checked as far as one machine allows: the Kubernetes instance configuration
(K8sRunLauncher + PostgreSQL) loads with a dummy kubeconfig, and the Helm values and the image
serve the code location this project defines (no Docker engine or cluster here)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from variance_pipeline.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"

DUMMY_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
  name: dummy
contexts:
- context: {cluster: dummy, user: dummy, namespace: dagster}
  name: dummy
current-context: dummy
users:
- name: dummy
  user: {token: not-a-real-token}
"""


def code_location_module() -> str:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]


@pytest.mark.slow
def test_the_kubernetes_instance_configuration_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "k8s" / "dagster-k8s.yaml", home / "dagster.yaml")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(DUMMY_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres.url)  # a real server: the storage checks its schema
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "K8sRunLauncher"
        assert launcher.job_image == "registry.example/variance-pipeline:0.1.0"
        assert launcher.job_namespace == "dagster"
        assert set(launcher.env_secrets) == {"variance-tastytrade", "variance-s3"}
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
    finally:
        instance.dispose()


def test_helm_values_and_image_serve_this_code_location() -> None:
    module = code_location_module()
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert secrets == {"variance-tastytrade", "variance-s3"}
    # No secret value is written into the values: only references to Kubernetes secrets.
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    for word in ("TASTYTRADE_CLIENT_SECRET=", "AWS_SECRET_ACCESS_KEY="):
        assert f"{word}..." in text and f"{word}x" not in text
    dockerfile = (DEPLOY / "k8s" / "Dockerfile").read_text()
    assert f'"-m", "{module}"' in dockerfile
    assert "dagster-k8s==" in dockerfile


def test_the_postgres_instance_configuration_names_its_url_by_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((DEPLOY / "dagster-postgres.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)
    with pytest.raises(Exception, match="DAGSTER_POSTGRES_URL"):
        dg.DagsterInstance.from_config(str(home))


def test_helm_values_put_the_data_dir_on_s3_as_the_pipeline_reads_it() -> None:
    """The user-code server and every run's pod read one s3:// data dir, with its region, and the
    queue lets one run write it at a time (README, "Growing beyond one machine": Limits)."""
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    served = {item["name"]: item["value"] for item in deployment["env"]}
    launched = dict(item.split("=", 1) for item in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"])
    assert launched == served
    settings = Settings.from_env({**served, "VARIANCE_CACHE_DIR": "/tmp/variance-cache"})
    assert settings.remote is not None and settings.remote.url == "s3://variance-data/team"
    assert settings.remote.region == "us-east-1"
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == 1
