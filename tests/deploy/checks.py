"""Static checks shared by the deploy tests: a container's command is one the image can
run (parsed by the real CLI it names), and its environment is made of settings
`connectors/settings.py` reads or variables the image itself needs."""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

import click
import pytest

from connectors.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The app image's WORKDIR, where deploy/Dockerfile puts the repository's files.
IMAGE_APP_DIR = "/app"

# Variables the image or a tool in it reads, not sqlbook's Settings: deploy/dagster.yaml's
# storage URL, Dagster's home, prometheus-client's multiprocess folder, uvicorn's trusted
# proxies.
IMAGE_ENV = {
    "SQLBOOK_DAGSTER_STORAGE_URL",
    "DAGSTER_HOME",
    "PROMETHEUS_MULTIPROC_DIR",
    "FORWARDED_ALLOW_IPS",
}


def setting_names() -> set[str]:
    return {f"SQLBOOK_{name.upper()}" for name in Settings.model_fields}


def unknown_variables(names: set[str]) -> set[str]:
    """The names that are neither a setting nor something the image needs."""
    known = setting_names() | IMAGE_ENV
    return {n for n in names if n not in known}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`Settings()` as a container with exactly this environment builds it."""
    for name in [n for n in os.environ if n.startswith("SQLBOOK_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def image_path(path: str) -> Path:
    """A path inside the app image as the repository file it was copied from."""
    assert path.startswith(IMAGE_APP_DIR + "/"), f"{path} is not under {IMAGE_APP_DIR}"
    return REPO / path[len(IMAGE_APP_DIR) + 1 :]


def _repo_path(arg: str) -> str:
    if arg == IMAGE_APP_DIR or arg.startswith(IMAGE_APP_DIR + "/"):
        return str(image_path(arg)) if arg != IMAGE_APP_DIR else str(REPO)
    return arg


def expand_k8s(argv: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) references in command/args, from the container's env."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], a) for a in argv]


def _click(command: click.Command, argv: list[str], prog: str) -> click.Context:
    try:
        return command.make_context(prog, list(argv))
    except click.ClickException as err:  # pragma: no cover - the failure message
        pytest.fail(f"`{prog} {' '.join(argv)}`: {err.format_message()}")


def _click_group(group: click.Command, argv: list[str], prog: str) -> click.Context:
    """Walk a click group down to the leaf command and parse its options."""
    while isinstance(group, click.Group):
        assert argv, f"`{prog}` needs a subcommand"
        sub = group.commands.get(argv[0])
        assert sub is not None, f"`{prog}` has no subcommand {argv[0]!r}"
        prog, argv, group = f"{prog} {argv[0]}", argv[1:], sub
    return _click(group, argv, prog)


def _check_workspace(path: str) -> None:
    """A Dagster workspace file (as found in the repository): its module loads `defs`."""
    import yaml

    workspace = yaml.safe_load(Path(path).read_text())
    for entry in workspace["load_from"]:
        module = entry["python_module"]["module_name"]
        _check_definitions(module)


def _check_definitions(module: str) -> None:
    import dagster as dg

    loaded = importlib.import_module(module)
    assert any(isinstance(v, dg.Definitions) for v in vars(loaded).values()), (
        f"{module} defines no dagster Definitions"
    )


def check_command(argv: list[str]) -> None:
    """Fails unless `argv` is a command the app image runs: parsed by the CLI it names."""
    assert argv, "empty command"
    # paths inside the image are the repository's files (the CLIs check they exist)
    exe, args = argv[0], [_repo_path(a) for a in argv[1:]]
    if exe == "python" and args[:2] == ["-m", "connectors.observability.dagster_cli"]:
        # sqlbook's wrapper: the Dagster console script named next, its logs as JSON
        importlib.import_module("connectors.observability.dagster_cli")
        assert args[2] in ("dagster-webserver", "dagster-daemon"), args[2]
        check_command(args[2:])
    elif exe == "sqlbook":
        from api.cli import parser

        try:
            parser().parse_args(args)
        except SystemExit:  # pragma: no cover
            pytest.fail(f"`sqlbook {' '.join(args)}` is not a sqlbook command")
    elif exe == "uvicorn":
        importlib.import_module("uvicorn.main")  # the package shadows the module name
        ctx = _click(sys.modules["uvicorn.main"].main, args, "uvicorn")
        module, _, attr = ctx.params["app"].partition(":")
        target = getattr(importlib.import_module(module), attr)
        assert callable(target), f"{ctx.params['app']} is not callable"
        if ctx.params["factory"]:
            assert not isinstance(target, type), "a factory is a function returning the app"
        assert ctx.params["port"] > 0
    elif exe == "dagster-webserver":
        from dagster_webserver.cli import cli

        ctx = _click(cli, args, exe)
        for path in ctx.params.get("workspace") or ():
            _check_workspace(path)
        if ctx.params.get("module_name"):
            for module in ctx.params["module_name"]:
                _check_definitions(module)
    elif exe == "dagster-daemon":
        from dagster._daemon.cli import cli

        ctx = _click_group(cli, args, exe)
        for path in ctx.params.get("workspace") or ():
            _check_workspace(path)
    elif exe == "dagster":
        from dagster._cli import cli

        ctx = _click_group(cli, args, exe)
        if ctx.params.get("module_name"):
            _check_definitions(ctx.params["module_name"])
    else:
        pytest.fail(f"{exe!r} is not a command of the sqlbook image")
