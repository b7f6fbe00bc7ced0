"""infra/compose: `docker-compose config` accepts it, and every setting it passes is one ATLAS has (and valid)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from atlas.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "infra" / "compose"


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as `docker-compose config` resolves it (anchors merged, paths made absolute)."""
    assert shutil.which("docker-compose"), "docker-compose is missing: `make setup` installs Debian's package"
    done = subprocess.run(["docker-compose", "-f", str(COMPOSE / "compose.yml"), "config"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def atlas_services(resolved: dict) -> dict[str, dict]:
    return {name: s for name, s in resolved["services"].items() if s.get("image") == "atlas:local"}


def test_compose_runs_what_the_issue_asks_for(resolved):
    assert {"kafka", "minio", "dynamodb", "worker-1", "worker-2", "projector", "prometheus", "grafana",
            "jaeger", "provision"} <= set(resolved["services"])
    commands = {name: s.get("command") for name, s in atlas_services(resolved).items()}
    assert commands["projector"] == ["python", "-m", "atlas", "cloud", "project"]
    assert commands["provision"] == ["python", "-m", "atlas", "cloud", "provision"]
    assert commands["worker-1"] is None  # the image's: python -m atlas worker


def test_every_atlas_setting_it_passes_exists_and_is_valid(resolved):
    fields = set(Settings.model_fields)
    for name, service in atlas_services(resolved).items():
        passed = {k: v for k, v in service["environment"].items() if k.startswith("ATLAS_")}
        unknown = sorted(k for k in passed if k.removeprefix("ATLAS_").lower() not in fields)
        assert unknown == [], f"{name} passes settings ATLAS does not have: {unknown}"
        Settings(**{k.removeprefix("ATLAS_").lower(): v for k, v in passed.items()})  # raises on a bad value


def test_prometheus_scrapes_both_workers_with_the_repositorys_rules(resolved):
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["worker-1:8080", "worker-2:8080"]
    mounts = [m.split(":") for m in resolved["services"]["prometheus"]["volumes"]]  # source:target:mode
    [source] = [m[0] for m in mounts if m[1] == config["rule_files"][0]]
    assert Path(source) == ROOT / "infra" / "prometheus" / "alerts.yml"
