"""deploy/compose.yaml: it parses, runs only finsent commands and options that exist, probes
the ports the services really listen on, and its Prometheus/Grafana watch real metrics."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from services.cli.app import app
from services.settings import FlatSettings
from tests.deploy.artifacts import (
    DEPLOY,
    REPO,
    exported_metric_names,
    interpolate_compose,
    resolve_command,
    unknown_options,
)

# Which port each long-running command probes, from the settings that define it.
PROBE_PORTS = {
    "worker": FlatSettings.model_fields["scorer_metrics_port"].default,
    "alerter": FlatSettings.model_fields["alerter_metrics_port"].default,
    "dispatcher": FlatSettings.model_fields["dispatcher_metrics_port"].default,
    "scheduler": FlatSettings.model_fields["scheduler_metrics_port"].default,
    "dashboard": FlatSettings.model_fields["dashboard_port"].default,
    "serve-http": FlatSettings.model_fields["ingest_http_port"].default,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def finsent_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the finsent image (its entrypoint is `finsent`)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {
        "kafka", "postgres", "migrate", "init", "worker", "alerter", "dispatcher", "scheduler",
        "dashboard", "prometheus", "grafana",
    }  # fmt: skip
    assert expected <= set(services), sorted(expected - set(services))
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    # Kafka refuses to format its storage unless the cluster id is a UUID in URL-safe base64
    assert len(base64.urlsafe_b64decode(kafka["CLUSTER_ID"] + "==")) == 16
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert compose["x-finsent"]["environment"]["FINSENT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "healthcheck" in services["postgres"]
    assert services["worker"]["deploy"]["replicas"] == "${FINSENT_WORKERS:-2}"
    # one active alerter and scheduler, one standby each (the database lock decides)
    assert services["alerter"]["deploy"]["replicas"] == 2
    assert services["scheduler"]["deploy"]["replicas"] == 2


def test_every_command_is_a_finsent_command_with_real_options(compose: dict[str, Any]) -> None:
    services = finsent_services(compose)
    assert len(services) >= 8
    for name, service in services.items():
        command = service["command"]
        assert isinstance(command, list) and all(isinstance(a, str) for a in command), name
        path, click_command, rest = resolve_command(command)
        assert unknown_options(click_command, rest) == [], (name, command)
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (name, path, result.output)


def test_a_misspelt_command_or_option_is_caught() -> None:
    with pytest.raises(AssertionError, match="no such command"):
        resolve_command(["workers"])
    _, command, rest = resolve_command(["models", "register", "DIR", "--champoin"])
    assert unknown_options(command, rest) == ["--champoin"]


def test_one_shot_steps_run_before_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["init"]["command"] == ["init"]
    for step in ("migrate", "init"):
        assert services[step]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker", "alerter", "dispatcher", "scheduler", "dashboard"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["init"]["condition"] == "service_completed_successfully", name


def test_healthchecks_probe_the_port_each_service_listens_on(compose: dict[str, Any]) -> None:
    for name, service in finsent_services(compose).items():
        command = resolve_command(service["command"])[0][0]
        if command not in PROBE_PORTS:
            assert service.get("healthcheck") == {"disable": True}, name  # one-shot steps
            continue
        url = service["environment"]["HEALTHCHECK_URL"]
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/\S*)", url)
        assert match, (name, url)
        assert int(match.group(1)) == PROBE_PORTS[command], (name, url)
        # every finsent service serves a real /health; the dashboard is Streamlit's
        expected_path = {"dashboard": "/_stcore/health"}.get(command, "/health")
        assert match.group(2) == expected_path, (name, url)


def test_seed_data_paths_in_the_image_exist_in_the_package(compose: dict[str, Any]) -> None:
    command = compose["services"]["train-bootstrap"]["command"]
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    python = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)\.", dockerfile)
    assert python
    prefix = f"/opt/finsent/lib/python{python.group(1)}/site-packages/"
    for option in ("--sentiment-data", "--topic-data"):
        path = command[command.index(option) + 1]
        assert path.startswith(prefix), path
        assert (REPO / path.removeprefix(prefix)).is_file(), path


def test_no_secret_in_the_compose_file(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    keys = list(re.finditer(r"^\s*(\w*(?:PASSWORD|SECRET|TOKEN)\w*):\s*(\S+)", text, re.MULTILINE))
    assert len(keys) >= 2
    for match in keys:
        assert match.group(2).startswith("${") and ":?" in match.group(2), match.group(0)
    url = compose["x-finsent"]["environment"]["FINSENT_DATABASE_URL"]
    assert ":${POSTGRES_PASSWORD:?" in url


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, port in {
        "finsent-worker": PROBE_PORTS["worker"],
        "finsent-alerter": PROBE_PORTS["alerter"],
        "finsent-dispatcher": PROBE_PORTS["dispatcher"],
        "finsent-scheduler": PROBE_PORTS["scheduler"],  # two replicas: each scraped on its own
    }.items():
        assert jobs[job]["dns_sd_configs"][0]["port"] == port, job


NOT_FINSENT = {"up", "kafka_consumergroup_lag"}  # Prometheus itself; kafka-exporter


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "finsent.json").read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: the identifiers followed by a selector or range,
    or standing alone, minus functions, aggregations and label names."""
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", expr))
    inside_braces = set(re.findall(r"(\w+)\s*=", expr)) | {
        w for group in re.findall(r"by \(([^)]*)\)", expr) for w in re.findall(r"\w+", group)
    }
    promql = {"sum", "rate", "increase", "count", "histogram_quantile", "by", "le", "max", "min", "avg"}
    return {w for w in words - inside_braces - promql if "_" in w or w == "up"}


def test_grafana_dashboard_uses_metrics_the_code_exports() -> None:
    exported = exported_metric_names()
    expressions = dashboard_expressions()
    assert expressions
    used = set().union(*(metric_names(e) for e in expressions))
    assert used - NOT_FINSENT <= exported, sorted(used - NOT_FINSENT - exported)
    # the dashboard covers what the issue asks for
    for needed in (
        "finsent_scorer_items_total",  # throughput
        "kafka_consumergroup_lag",  # lag
        "finsent_scorer_ingest_to_commit_seconds_bucket",  # latency
        "finsent_alerter_alerts_opened_total",  # alerts
        "finsent_model_info",  # model version
    ):
        assert needed in used, needed


def test_the_metric_name_check_would_catch_a_typo() -> None:
    exported = exported_metric_names()
    assert "finsent_scorer_items_total" in exported
    assert metric_names("sum(rate(finsent_scorer_item_total[1m]))") == {"finsent_scorer_item_total"}
    assert "finsent_scorer_item_total" not in exported


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    compose_text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/finsent.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in compose_text
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((DEPLOY / "grafana/dashboards/finsent.json").read_text())
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {uid}


REQUIRED_ENV = {"POSTGRES_PASSWORD": "example", "GRAFANA_ADMIN_PASSWORD": "example"}


def compose_spec_error(document: dict[str, Any]) -> str | None:
    """The Compose specification's verdict (compose-spec, a strict parser of the spec: unknown
    keys, wrong types, bad durations and conditions are errors), None when valid."""
    compose_spec = pytest.importorskip("compose_spec", reason="compose-spec has Linux wheels only")
    spec = {k: v for k, v in document.items() if not k.startswith("x-")}  # merged in already
    try:
        compose_spec.PyCompose.from_json(json.dumps(spec))
    except ValueError as exc:
        return str(exc)
    return None


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    resolved = interpolate_compose(compose, REQUIRED_ENV)
    assert compose_spec_error(resolved) is None
    assert resolved["services"]["worker"]["deploy"]["replicas"] == 2
    for name in REQUIRED_ENV:  # a missing password stops compose with a message, as it should
        with pytest.raises(KeyError, match=name):
            interpolate_compose(compose, {k: v for k, v in REQUIRED_ENV.items() if k != name})


def test_the_specification_check_would_catch_mistakes(compose: dict[str, Any]) -> None:
    resolved = interpolate_compose(compose, REQUIRED_ENV)
    typo = json.loads(json.dumps(resolved))
    typo["services"]["worker"]["restrat"] = "always"
    assert compose_spec_error(typo) is not None
    wrong = json.loads(json.dumps(resolved))
    wrong["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_done"
    assert compose_spec_error(wrong) is not None
