"""Static checks of the deployment files (no Docker engine runs here, so they are validated, not run)."""

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


def test_api_port_and_healthcheck(compose: dict, tmp_path: Path) -> None:
    api = compose["services"]["api"]
    assert any(str(p).endswith(":8000") for p in api["ports"])
    test = " ".join(api["healthcheck"]["test"])
    path = re.search(r"127\.0\.0\.1:8000(/\w+)", test)
    assert path is not None
    # The probed path must be a route the app really serves.
    from fastapi.testclient import TestClient

    from iconosearch.api.app import create_app
    from iconosearch.config import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app) as client:
        # Liveness must not depend on an index existing yet (the indexer may not have run).
        assert client.get(path.group(1)).status_code == 200
    assert compose["services"]["indexer"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_referenced_files_exist(compose: dict) -> None:
    for name, service in compose["services"].items():
        build = service["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from=" not in line:
                for src in line.split()[1:-1]:
                    assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} missing"
        for mount in service["volumes"]:
            host = mount.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name}: bind-mounted {host} missing"


def test_deploy_config_is_valid() -> None:
    settings = load_settings(ROOT / "deploy" / "iconosearch.toml")
    assert settings.server.host == "0.0.0.0"
    assert str(settings.data_dir) == "/data"


def test_indexer_script_runs_harvest_then_index() -> None:
    script = (ROOT / "indexer" / "run.sh").read_text()
    assert re.search(r"iconosearch [^\n]*harvest && iconosearch [^\n]*index", script)
    assert (ROOT / "indexer" / "run.sh").stat().st_mode & 0o111
