"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path or volume name, for the short and the long volume syntax."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
        else:
            source, target = volume["source"], volume["target"]
        result[target] = source
    return result


def mongo_port(mongo: dict[str, Any]) -> int:
    command = " ".join(mongo.get("command", []))
    match = re.search(r"--port[ =](\d+)", command)
    return int(match.group(1)) if match else 27017


def test_app_connects_to_the_mongo_service(services: dict[str, Any]) -> None:
    uri = urlsplit(environment(services["app"])["MONGODB_URI"])
    query = parse_qs(uri.query)
    assert uri.scheme == "mongodb"
    assert uri.hostname == "mongo" and "mongo" in services
    assert uri.port == mongo_port(services["mongo"])
    assert query.get("replicaSet") == ["rs0"] or query.get("directConnection") == ["true"]


def test_mongo_is_a_replica_set_that_its_healthcheck_initiates(services: dict[str, Any]) -> None:
    mongo = services["mongo"]
    assert mongo["image"].startswith("mongo:8")
    command = mongo["command"] if isinstance(mongo["command"], list) else mongo["command"].split()
    assert command[command.index("--replSet") + 1] == "rs0"
    check = mongo["healthcheck"]
    test = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
    assert "mongosh" in test and "rs.initiate" in test and "_id: 'rs0'" in test
    # the member's host name is what the driver connects to after discovery: it must be the one the app uses
    uri = urlsplit(environment(services["app"])["MONGODB_URI"])
    assert f"host: '{uri.hostname}:{uri.port}'" in test
    assert check["retries"] >= 1


def test_mongo_data_is_a_named_volume(services: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert mounts(services["mongo"])["/data/db"] in compose["volumes"]


def test_app_waits_for_a_healthy_mongo(services: dict[str, Any]) -> None:
    assert services["app"]["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_import_folder_is_mounted_where_import_dir_points(services: dict[str, Any]) -> None:
    app = services["app"]
    import_dir = environment(app)["IMPORT_DIR"]
    assert mounts(app)[import_dir] == "./data/imports"


def test_app_environment_is_valid_settings_and_published(services: dict[str, Any]) -> None:
    env = environment(services["app"])
    known = {field.name.upper() for field in msgspec.structs.fields(Settings)}
    assert set(env) <= known
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0"
    assert f"{settings.port}:{settings.port}" in services["app"]["ports"]
    assert services["app"]["build"] in (".", {"context": "."})


# Every instruction a Dockerfile may hold (the Dockerfile reference); anything else is a broken line, such as a
# continuation whose backslash went missing.
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL", "MAINTAINER",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


PIP_INSTALL = ["pip", "install", "."]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, as the builder reads them: comments and blank lines skipped, lines
    ending in a backslash joined to the next one."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        name, _, arguments = (pending + line).partition(" ")
        result.append((name.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, f"the last instruction ends in a backslash: {pending!r}"
    return result


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD or ENTRYPOINT (a shell-form one fails here)."""
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command), arguments
    return command


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text())


def test_dockerfile_holds_only_instructions(dockerfile: list[tuple[str, str]]) -> None:
    unknown = [(name, arguments) for name, arguments in dockerfile if name not in INSTRUCTIONS]
    assert unknown == []
    assert next(name for name, _ in dockerfile if name != "ARG") == "FROM"


def test_dockerfile_installs_the_project_and_runs_serve(dockerfile: list[tuple[str, str]]) -> None:
    names = [name for name, _ in dockerfile]
    [base] = [arguments for name, arguments in dockerfile if name == "FROM"]
    assert base == "python:3.11-slim"
    runs = [i for i, (name, _) in enumerate(dockerfile) if name == "RUN"]
    # `RUN --mount=... pip install .`: the words that are not flags
    installs = [i for i in runs if [w for w in dockerfile[i][1].split() if not w.startswith("--")] == PIP_INSTALL]
    assert len(installs) == 1, [dockerfile[i] for i in runs]
    assert names.index("COPY") < installs[0]  # the project's files are copied before they are installed
    [cmd] = [exec_form(arguments) for name, arguments in dockerfile if name == "CMD"]
    assert cmd[:4] == ["python", "-m", "app", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_dockerfile_runs_as_a_user_and_exposes_the_port_it_checks(dockerfile: list[tuple[str, str]]) -> None:
    [user] = [arguments for name, arguments in dockerfile if name == "USER"]
    assert user not in ("root", "0")
    [env] = [arguments for name, arguments in dockerfile if name == "ENV"]
    assert "PORT=8000" in env.split() and "HOST=0.0.0.0" in env.split()
    assert [arguments for name, arguments in dockerfile if name == "EXPOSE"] == ["8000"]
    [check] = [arguments for name, arguments in dockerfile if name == "HEALTHCHECK"]
    assert " CMD " in f" {check} " and "/health" in check


def test_dockerignore_admits_what_pip_install_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"*", "!pyproject.toml", "!app/"} <= set(lines)
