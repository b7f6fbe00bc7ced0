"""The alert rules pass their promtool tests; the dashboards on disk are what dashboards.py writes."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from atlas.infra.grafana.dashboards import HERE as GRAFANA, rendered
from atlas.infra.prometheus.server import HERE as PROMETHEUS, config

ROOT = Path(__file__).resolve().parents[3]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus (make setup)")


@needs_promtool
def test_the_alert_rules_are_valid():
    checked = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_every_alert_rule_passes_its_promtool_tests():
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS, capture_output=True,
                            text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_test():
    rules = (PROMETHEUS / "alerts.yml").read_text()
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")]
    assert len(names) == 11
    for name in names:
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"


def test_the_committed_dashboards_are_what_the_generator_writes():
    for name, text in rendered().items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, f"run python infra/grafana/dashboards.py ({name})"
    assert sorted(p.name for p in (GRAFANA / "dashboards").glob("*.json")) == sorted(rendered())


def test_the_four_dashboards_query_the_provisioned_datasource_only():
    titles = set()
    for text in rendered().values():
        doc = json.loads(text)
        titles.add(doc["title"])
        for panel in doc["panels"]:
            assert panel["datasource"]["uid"] == "atlas-prometheus" and panel["targets"]
            assert all("atlas_" in t["expr"] or t["expr"].startswith("up") for t in panel["targets"])
    assert titles == {"ATLAS / Trading", "ATLAS / Kafka", "ATLAS / Audit", "ATLAS / Workers"}
    provisioned = (GRAFANA / "provisioning" / "datasources" / "atlas.yml").read_text()
    assert "uid: atlas-prometheus" in provisioned


@needs_promtool
def test_the_scrape_config_is_valid_prometheus_configuration(tmp_path):
    key = tmp_path / "metrics.key"
    key.write_text("k")
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config(["127.0.0.1:8080"], key)))
    checked = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_make_observe_links_every_dashboard_panel_to_its_queries_in_prometheus(tmp_path, monkeypatch):
    from urllib.parse import parse_qs, urlsplit

    from atlas.infra import observe
    from atlas.infra.grafana.dashboards import DASHBOARDS, RATE

    monkeypatch.setattr(observe, "STATE", tmp_path)
    page = observe.write_dashboard_links().read_text()
    for _, title, panels in DASHBOARDS:
        assert f"<h2>{title}</h2>" in page
        for name, _, queries in panels:
            link = observe.dashboard_graph(queries)
            assert link.replace("&", "&amp;") in page and name.replace("&", "&amp;") in page
            shown = parse_qs(urlsplit(link).query)
            assert [shown[f"g{n}.expr"][0] for n in range(len(queries))] == [q.replace(RATE, "1m") for q, _ in queries]
