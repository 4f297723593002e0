"""Static checks of the deployment files; ``make deploy-test`` runs them for real with podman-compose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from iconosearch.config import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_volumes(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= {"api", "indexer"}
    assert set(compose["volumes"]) >= {"data", "models"}
    for name in ("api", "indexer"):
        mounts = services[name]["volumes"]
        assert any(m.startswith("data:/data") for m in mounts), f"{name} must share the data volume"
        assert any(m.startswith("models:") for m in mounts), f"{name} needs the model cache volume"
        env = services[name]["environment"]
        assert env["ICONOSEARCH_DATA_DIR"] == "/data"
        assert env["ICONOSEARCH_CONFIG"].startswith("/config/")


def test_proxy_port_and_api_healthcheck(compose: dict, tmp_path: Path) -> None:
    services = compose["services"]
    assert any(str(p).endswith(":8000") for p in services["proxy"]["ports"])
    assert "ports" not in services["api"], "replicas are reached through the proxy, not on host ports"
    assert int(str(services["api"]["deploy"]["replicas"]).split(":-")[-1].rstrip("}")) >= 2
    check = services["api"]["healthcheck"]["test"]
    test = check if isinstance(check, str) else " ".join(check)
    path = re.search(r"127\.0\.0\.1:\{port\}(/\w+)", test)
    assert path is not None
    # The probed path must be a route the app really serves.
    from fastapi.testclient import TestClient

    from iconosearch.api.app import create_app
    from iconosearch.config import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app) as client:
        # Liveness must not depend on an index existing yet (the indexer may not have run).
        assert client.get(path.group(1)).status_code == 200
    assert services["indexer"]["depends_on"]["api"]["condition"] == "service_healthy"
    # The proxy health-checks the replicas on the same path and retries failed requests elsewhere.
    assert f"option httpchk GET {path.group(1)}" in (ROOT / "deploy" / "haproxy-backend.cfg").read_text()
    frontend = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert "retry-on all-retryable-errors" in frontend and "option redispatch" in frontend


def test_referenced_files_exist(compose: dict) -> None:
    override = yaml.safe_load((ROOT / "deploy" / "test" / "compose.demo.yml").read_text())
    for name, service in [*compose["services"].items(), *override["services"].items()]:
        build = service.get("build")
        if build is not None:
            dockerfile = ROOT / build["context"] / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY") and "--from=" not in line:
                    for src in line.split()[1:-1]:
                        assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} missing"
        for mount in service.get("volumes", []):
            host = mount.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name}: bind-mounted {host} missing"
        assert name in compose["services"], f"the deploy test's override adds a service: {name}"


def test_deploy_config_is_valid() -> None:
    settings = load_settings(ROOT / "deploy" / "iconosearch.toml")
    assert settings.server.host == "0.0.0.0"
    assert str(settings.data_dir) == "/data"


def test_indexer_script_runs_harvest_then_index() -> None:
    script = (ROOT / "indexer" / "run.sh").read_text()
    assert re.search(r"iconosearch [^\n]*harvest && iconosearch [^\n]*index", script)
    assert (ROOT / "indexer" / "run.sh").stat().st_mode & 0o111
