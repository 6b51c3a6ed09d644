"""deploy/k8s/*.yaml validated against the Kubernetes API schemas (kubernetes-validate,
offline, strict: unknown fields are errors), and deploy/helm/dagster-values.yaml checked
against what the official Dagster chart takes and what the app image runs. No cluster
and no helm binary here: the manifests are plain YAML, already "rendered"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.checks import (
    DEPLOY,
    check_command,
    expand_k8s,
    settings_from,
    unknown_variables,
)

K8S = DEPLOY / "k8s"
VERSION = "1.30"  # the oldest Kubernetes still commonly run; newer ones accept these too


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for _, d in _documents()}


def _validate(resource: dict[str, Any], version: str = VERSION) -> None:
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {err.message}")


@pytest.mark.parametrize(
    "doc", _documents(), ids=lambda d: f"{d[0].name}:{d[1]['kind']}/{d[1]['metadata']['name']}"
)
@pytest.mark.parametrize("version", [VERSION, kubernetes_validate.latest_version()])
def test_manifests_are_valid_kubernetes(doc: tuple[Path, dict[str, Any]], version: str) -> None:
    _validate(doc[1], version)


def _pod_env(objects: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any]) -> dict:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= objects[("ConfigMap", source["configMapRef"]["name"])]["data"]
        if "secretRef" in source:
            env |= objects[("Secret", source["secretRef"]["name"])]["stringData"]
    env |= {e["name"]: e["value"] for e in container.get("env", [])}
    return env


def _containers(objects: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for (kind, _), o in objects.items()
        if kind in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
    ]


def test_commands_and_settings_of_every_container(
    objects: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    containers = _containers(objects)
    assert containers
    for container in containers:
        env = _pod_env(objects, container)
        assert not unknown_variables(set(env)), unknown_variables(set(env))
        settings_from(env, monkeypatch)  # every value parses
        check_command(expand_k8s(container["command"] + container.get("args", []), env))


def test_api_probes_service_and_autoscaling(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = objects[("Deployment", "sqlbook-api")]
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    args = expand_k8s(api["args"], {"SQLBOOK_API_WORKERS": "2"})
    assert f"--port={ports['http']}" in args
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert api[probe]["httpGet"]["port"] in ports
    # a non-root user the image has, nothing writable but its volumes
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in api["volumeMounts"]}
    env = {e["name"]: e["value"] for e in api["env"]}
    assert {"/data", "/tmp", env["PROMETHEUS_MULTIPROC_DIR"]} <= mounts
    # the Service reaches the pods' named port; the HPA scales this Deployment on CPU
    service = objects[("Service", "sqlbook-api")]
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"][0]["targetPort"] in ports
    hpa = objects[("HorizontalPodAutoscaler", "sqlbook-api")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sqlbook-api",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert api["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"
    assert hpa["spec"]["minReplicas"] >= 2
    ingress = objects[("Ingress", "sqlbook-api")]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "sqlbook-api"
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.fixture(scope="module")
def dagster_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())  # type: ignore[no-any-return]


# Keys of the chart's values.schema.json (chart 1.13) for the run launcher's config.
K8S_RUN_LAUNCHER_KEYS = {
    "envConfigMaps",
    "envSecrets",
    "envVars",
    "failPodOnRunFailure",
    "image",
    "imagePullPolicy",
    "jobNamespace",
    "kubeconfigFile",
    "labels",
    "loadInclusterConfig",
    "resources",
    "runK8sConfig",
    "schedulerName",
    "securityContext",
    "volumeMounts",
    "volumes",
}
RUN_K8S_CONFIG_KEYS = {
    "containerConfig",
    "jobMetadata",
    "jobSpecConfig",
    "podSpecConfig",
    "podTemplateSpecMetadata",
}


def test_dagster_chart_values(
    dagster_values: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]
) -> None:
    values = dagster_values
    # user code: the app image serving orchestration.definitions over gRPC
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    (api,) = objects[("Deployment", "sqlbook-api")]["spec"]["template"]["spec"]["containers"]
    image = deployment["image"]
    assert f"{image['repository']}:{image['tag']}" == api["image"]
    check_command(["dagster", "api", "grpc", *deployment["dagsterApiGrpcArgs"]])
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    # runs: a Kubernetes Job each
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= K8S_RUN_LAUNCHER_KEYS
    assert set(launcher["runK8sConfig"]) <= RUN_K8S_CONFIG_KEYS
    # storage: an external PostgreSQL through psycopg2
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    # every ConfigMap and Secret it names is one deploy/k8s defines
    for where in (deployment, launcher):
        for ref in where["envConfigMaps"]:
            assert ("ConfigMap", ref["name"]) in objects
        for ref in where["envSecrets"]:
            assert ("Secret", ref["name"]) in objects
    assert values["telemetry"]["enabled"] is False
    # the webserver and the daemon (the chart's images) hold none of sqlbook's secrets
    for name in ("dagsterWebserver", "dagsterDaemon"):
        assert "envSecrets" not in values[name]


def test_run_pods_built_from_the_values_are_valid(dagster_values: dict[str, Any]) -> None:
    """The run launcher's container and pod config, merged into a pod as the launcher
    does, against the Pod schema (snake_case keys are the launcher's, camelCase here)."""
    run = dagster_values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    deployment = dagster_values["dagster-user-deployments"]["deployments"][0]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dagster-run"},
        "spec": {
            **run.get("podSpecConfig", {}),
            "containers": [{"name": "dagster", "image": "x", **run.get("containerConfig", {})}],
        },
    }
    _validate(pod)
    code_server = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user-code"},
        "spec": {
            "securityContext": deployment["podSecurityContext"],
            "containers": [{"name": "dagster", "image": "x", "resources": deployment["resources"]}],
        },
    }
    _validate(code_server)
