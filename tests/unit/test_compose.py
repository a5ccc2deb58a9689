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


def test_dockerfile_installs_the_project_and_runs_serve() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN .*pip install \.$", dockerfile, re.MULTILINE)
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    command = json.loads(cmd.group(1))
    assert command[:4] == ["python", "-m", "app", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_dockerignore_admits_what_pip_install_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"*", "!pyproject.toml", "!app/"} <= set(lines)
