import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from app.settings import Settings, SettingsError

ROOT = Path(__file__).parents[2]


def test_defaults_when_the_environment_is_empty() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.mongodb_uri is None
    assert (settings.port, settings.log_level, settings.max_body_bytes) == (8000, "INFO", 1_048_576)
    assert settings.embedded_db_server == "auto"


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"PORT": "8080"}, "port", 8080),
        ({"API_TOKEN": "s3cret"}, "api_token", "s3cret"),
        ({"API_TOKEN": ""}, "api_token", None),  # empty is unset: the service is open
        ({"PORT": "0"}, "port", 0),
        ({"MONGODB_URI": "mongodb://db:27017"}, "mongodb_uri", "mongodb://db:27017"),
        ({"LOG_LEVEL": "DEBUG"}, "log_level", "DEBUG"),
        ({"LOG_LEVEL": "warning"}, "log_level", "WARNING"),
        ({"MAX_BODY_BYTES": "2048"}, "max_body_bytes", 2048),
        ({"IMPORT_BATCH_SIZE": "10000"}, "import_batch_size", 10_000),
        ({"IMPORT_CHECKPOINT_SECONDS": "0.25"}, "import_checkpoint_seconds", 0.25),
        ({"IMPORT_RETRY_SECONDS": "5"}, "import_retry_seconds", 5.0),
        ({"IMPORT_MAX_REJECTS": "0"}, "import_max_rejects", 0),
        ({"EXPORT_MAX_CONCURRENT": "1"}, "export_max_concurrent", 1),
        ({"EXPORT_MAX_CONCURRENT": "100"}, "export_max_concurrent", 100),
        ({"EXPORT_BATCH_SIZE": "10000"}, "export_batch_size", 10_000),
        ({"CSV_FILE_PATH": "/data/customers.csv"}, "csv_file_path", "/data/customers.csv"),
        ({"EMBEDDED_DB_SERVER": "python"}, "embedded_db_server", "python"),
        ({"EMBEDDED_DB_SERVER": sys.executable}, "embedded_db_server", sys.executable),  # any executable file
        ({"PORT": ""}, "port", 8000),  # an empty variable means "use the default"
        ({"port": "1"}, "port", 8000),  # names are upper case
        ({"UNRELATED": "x"}, "port", 8000),
    ],
)
def test_values_are_converted_from_strings(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PORT", "-1"),
        ("PORT", "80.5"),
        ("LOG_LEVEL", "LOUD"),
        ("IMPORT_BATCH_SIZE", "0"),
        ("IMPORT_BATCH_SIZE", "10001"),
        ("IMPORT_WORKERS", "0"),
        ("IMPORT_BLOCK_BYTES", "100"),
        ("IMPORT_CHECKPOINT_SECONDS", "0"),
        ("IMPORT_LEASE_SECONDS", "soon"),
        ("CHEAP_SLOTS", "0"),
        ("EXPENSIVE_SLOTS", "1001"),
        ("MAX_REQUESTS_IN_FLIGHT", "many"),
        ("MAX_CONNECTIONS", "8"),
        ("MAX_BODY_BYTES", "1MB"),
        ("EXPORT_MAX_CONCURRENT", "0"),
        ("EXPORT_MAX_CONCURRENT", "101"),
        ("EXPORT_MAX_CONCURRENT", "two"),
        ("EXPORT_BATCH_SIZE", "0"),
        ("EXPORT_BATCH_SIZE", "10001"),
        ("EMBEDDED_DB_SERVER", "/nonexistent/secantusd-rs"),
        ("EMBEDDED_DB_SERVER", "rust"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}="):
        Settings.from_env({"PORT": "8000", name: raw})


FLOAT_SETTINGS = (
    "IMPORT_CHECKPOINT_SECONDS",
    "IMPORT_RETRY_SECONDS",
    "IMPORT_LEASE_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "ADMISSION_WAIT_SECONDS",
    "EXPENSIVE_SHARE",
    "LIST_TOTAL_CACHE_SECONDS",
)


@pytest.mark.parametrize("raw", ["inf", "Infinity", "-inf", "nan", "1e999", "-1", "86401"])
@pytest.mark.parametrize("name", FLOAT_SETTINGS)
def test_a_float_setting_must_be_finite_and_in_range(name: str, raw: str) -> None:
    """`IMPORT_LEASE_SECONDS=inf` was accepted: a killed job would never be taken over."""
    with pytest.raises(SettingsError, match=f"^{name}="):
        Settings.from_env({name: raw})


def test_every_float_setting_is_bounded_above() -> None:
    """A new float setting gets a finite range too (the list above is every one)."""
    floats = [f.name.upper() for f in msgspec.structs.fields(Settings) if "float" in repr(f.type)]
    assert tuple(floats) == FLOAT_SETTINGS


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("IMPORT_CHECKPOINT_SECONDS", "0.1", "60"),
        ("IMPORT_RETRY_SECONDS", "1", "86400"),
        ("IMPORT_LEASE_SECONDS", "1", "3600"),
        ("REQUEST_TIMEOUT_SECONDS", "0.05", "60"),
        ("ADMISSION_WAIT_SECONDS", "0", "5"),
        ("LIST_TOTAL_CACHE_SECONDS", "0", "3600"),
        ("EXPENSIVE_SHARE", "0", "64"),
    ],
)
def test_a_float_setting_takes_its_whole_range(name: str, low: str, high: str) -> None:
    for raw in (low, high):
        assert getattr(Settings.from_env({name: raw}), name.lower()) == float(raw)
    for raw in (f"{float(low) * 0.99 if float(low) else -0.01}", f"{float(high) * 1.01}"):
        with pytest.raises(SettingsError, match=f"^{name}="):
            Settings.from_env({name: raw})


@pytest.mark.parametrize("command", [["serve"], ["import", "missing.csv"]])
def test_an_infinite_lease_stops_the_process_with_one_line_naming_it(command: list[str]) -> None:
    env = {"IMPORT_LEASE_SECONDS": "inf", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "app", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMPORT_LEASE_SECONDS='inf' is invalid" in lines[0], done.stderr


def test_serve_with_a_bad_port_exits_with_one_line_naming_it() -> None:
    env = {"PORT": "abc", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "PORT" in lines[0] and "abc" in lines[0]
    assert done.stdout == ""


def test_serve_with_a_port_out_of_range_names_the_range() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "70000"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].endswith("argument --port: '70000' is not an integer in 0..65535")


def test_import_path_is_import_dir_when_set(tmp_path: Path) -> None:
    settings = Settings(import_dir=str(tmp_path / "in"), csv_file_path=str(tmp_path / "csv" / "c.csv"))
    assert settings.import_path == (tmp_path / "in").resolve()


def test_import_path_is_the_folder_of_csv_file_path(tmp_path: Path) -> None:
    settings = Settings(csv_file_path=str(tmp_path / "csv" / "c.csv"), data_dir=str(tmp_path / "data"))
    assert settings.import_path == (tmp_path / "csv").resolve()


def test_import_path_defaults_to_data_dir_imports(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    assert settings.import_path == (tmp_path / "data" / "imports").resolve()
    assert settings.data_path == (tmp_path / "data").resolve()


def test_relative_paths_resolve_against_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir="d").import_path == (tmp_path / "d" / "imports").resolve()
    assert Settings(csv_file_path="c.csv").import_path == tmp_path.resolve()


def test_docs_settings_names_every_setting_and_the_readme_counts_them() -> None:
    names = {field.name.upper() for field in msgspec.structs.fields(Settings)}
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")))
    assert names - documented == set()
    counted = re.search(r"All (\d+): \[settings\.md\]", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert counted is not None and int(counted.group(1)) == len(names)
