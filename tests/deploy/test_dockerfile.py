"""deploy/Dockerfile, parsed (dockerfile-parse) rather than built: no Docker engine runs
on these machines. The stages the issue asks for exist, the app runs as a non-root user,
the web UI is built in a stage of its own, every file COPY takes from the build context
exists and is not ignored, and the default command is one the image can run."""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass, field

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.checks import DEPLOY, REPO, check_command, unknown_variables


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    parser = DockerfileParser(str(DEPLOY / "Dockerfile"))
    args = {}
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "ARG" and current is None:
            name, _, default = value.partition("=")
            args[name] = default
        elif instruction == "FROM":
            parts = value.split()
            base = parts[0]
            for name, default in args.items():
                base = base.replace("${" + name + "}", default)
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(found))
            current = found[name] = Stage(name, base)
        elif current is not None and instruction != "COMMENT":
            current.instructions.append((instruction, value))
    return found


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{value}: use the exec form (no shell, signals reach it)"
    return parsed


def test_stages_and_the_default_target(stages: dict[str, Stage]) -> None:
    assert {"build", "alerts", "ui", "app-build", "app"} <= set(stages)
    assert list(stages)[-1] == "app", "a plain `docker build` makes the app image"
    assert stages["ui"].base.startswith("node:")
    assert stages["app"].base.startswith("python:3.11")


@pytest.mark.parametrize("stage", ["app", "alerts"])
def test_runs_as_a_non_root_user(stages: dict[str, Stage], stage: str) -> None:
    users = stages[stage].values("USER")
    assert users, f"{stage} sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric uid (runAsNonRoot can check it)"
    created = " ".join(stages[stage].values("RUN"))
    assert f"--uid {uid}" in created


def test_the_web_ui_is_built_in_its_own_stage(stages: dict[str, Stage]) -> None:
    runs = stages["ui"].values("RUN")
    assert any(r.startswith("npm ci") for r in runs)
    assert any("npm run build" in r for r in runs)
    copies = stages["app"].values("COPY")
    assert "--from=ui /ui/dist /app/ui/dist" in copies
    env = " ".join(stages["app"].values("ENV"))
    assert "SQLBOOK_UI_DIST=/app/ui/dist" in env


def _ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_every_copied_file_is_in_the_build_context(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        for value in stage.values("COPY"):
            parts = shlex.split(value)
            if any(p.startswith("--from=") for p in parts):
                source_stage = next(p for p in parts if p.startswith("--from="))[7:]
                assert source_stage in stages, f"COPY {value}: no stage {source_stage}"
                continue
            for source in parts[:-1]:
                assert (REPO / source).exists(), f"COPY {value}: {source} is not in the repo"
                assert not _ignored(source.rstrip("/")), f"{source} is in the .dockerignore"


def test_the_dagster_home_and_workspace_of_the_image(stages: dict[str, Stage]) -> None:
    app = stages["app"]
    env = " ".join(app.values("ENV"))
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    assert any(c.endswith("/opt/dagster/dagster_home/dagster.yaml") for c in app.values("COPY"))
    build = " ".join(stages["app-build"].values("COPY"))
    assert "workspace.yaml" in build and "deploy/plugins" in build
    assert app.values("WORKDIR")[-1] == "/app"


def test_the_image_sets_only_known_variables(stages: dict[str, Stage]) -> None:
    names = set()
    for value in stages["app"].values("ENV"):
        names |= {part.split("=", 1)[0] for part in shlex.split(value)}
    sqlbook = {n for n in names if n.startswith(("SQLBOOK_", "DAGSTER_", "PROMETHEUS_"))}
    assert not unknown_variables(sqlbook)


def test_default_commands_are_ones_the_image_runs(stages: dict[str, Stage]) -> None:
    check_command(_exec_form(stages["app"].values("CMD")[-1]))
    alerts = _exec_form(stages["alerts"].values("ENTRYPOINT")[-1])
    check_command(alerts + _exec_form(stages["alerts"].values("CMD")[-1]))


def test_the_build_stages_fit_the_project(stages: dict[str, Stage]) -> None:
    """The Python base satisfies pyproject's requires-python; the UI stage runs scripts
    ui/package.json has, from its lock file; the app stage exposes the ports the compose
    file and the Kubernetes manifests use."""
    import tomllib

    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = stages["app"].base.split(":")[1].split("-")[0]
    assert python in SpecifierSet(project["requires-python"])
    package = json.loads((REPO / "ui" / "package.json").read_text())
    assert "build" in package["scripts"]
    assert (REPO / "ui" / "package-lock.json").exists(), "npm ci needs the lock file"
    exposed = {int(p) for v in stages["app"].values("EXPOSE") for p in v.split()}
    assert {8000, 3000, 3030} <= exposed
