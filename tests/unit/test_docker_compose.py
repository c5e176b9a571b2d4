"""The production stack (docker-compose.yml, Dockerfile) is wired the way the code expects.

Docker cannot run on the development machines or in CI, so the stack is checked by reading
the files: services and their commands, the image they build, the mounts that the Airflow
folder settings point at, the Celery wiring, every connection the DAGs use, and that no secret
is written into the file.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK_FILE = ROOT / "requirements.lock"
MAKEFILE = ROOT / "Makefile"

PROJECT_DIR = "/opt/cem"
AIRFLOW_UID = 50000

# service -> the `airflow ...` command it must run
AIRFLOW_COMMANDS: dict[str, list[str]] = {
    "airflow-init": ["airflow", "db", "migrate"],
    "airflow-apiserver": ["airflow", "api-server"],
    "airflow-scheduler": ["airflow", "scheduler"],
    "airflow-dag-processor": ["airflow", "dag-processor"],
    "airflow-triggerer": ["airflow", "triggerer"],
    "airflow-worker": ["airflow", "celery", "worker"],
}
LONG_RUNNING = sorted(set(AIRFLOW_COMMANDS) - {"airflow-init"})
PROJECT_MOUNTS = ("dags", "plugins", "dbt_project", "expectations")

# Connections the DAGs rely on even before (or whatever) the scan below finds.
REQUIRED_CONN_IDS = {"cem_warehouse", "cem_source_crm", "cem_source_sales", "cem_source_surveys"}

# Connection ids written as `conn_id="cem_x"`, `postgres_conn_id: str = "cem_x"`,
# `WAREHOUSE_CONN_ID = "cem_x"`, `WAREHOUSE_CONN_ID: Final = "cem_x"` or `{"conn_id": "cem_x"}`.
_CONN_ID_PATTERNS = (
    re.compile(r"\b\w*(?:conn_id|CONN_ID)\b\s*(?::[^=\n]*)?=\s*[\"'](cem_[a-z_]+)[\"']"),
    re.compile(r"[\"']\w*conn_id[\"']\s*:\s*[\"'](cem_[a-z_]+)[\"']"),
)
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, ${VAR:+alt}; not $${VAR}.
_SUBSTITUTION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_BARE_SUBSTITUTION = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|TOKEN|API_KEY)$")


# --- helpers (pure) ---------------------------------------------------------------------------


def find_conn_ids(text: str) -> set[str]:
    """The `cem_*` Airflow connection ids a Python source text refers to."""
    return {match for pattern in _CONN_ID_PATTERNS for match in pattern.findall(text)}


def substitutions(text: str) -> list[tuple[str, str, str]]:
    """Every `${VAR...}` in a compose text as (name, operator, argument)."""
    return [(name, op or "", arg or "") for name, op, arg in _SUBSTITUTION.findall(text)]


def split_uri(uri: str) -> dict[str, Any]:
    """Parts of a URI whose user, password or database may be `${...}` substitutions."""
    found: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        found.append(match.group(0))
        return f"subst{len(found) - 1}x"

    parts = urlsplit(_SUBSTITUTION.sub(placeholder, uri))

    def restore(text: str | None) -> str:
        return re.sub(r"subst(\d+)x", lambda m: found[int(m.group(1))], text or "")

    return {
        "scheme": parts.scheme,
        "user": restore(parts.username),
        "password": restore(parts.password),
        "host": parts.hostname,
        "port": parts.port,
        "database": restore(parts.path.lstrip("/")),
    }


def strings(node: Any) -> list[str]:
    """Every string value in a parsed YAML document (what compose interpolates; not comments)."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def is_required_substitution(value: str) -> bool:
    """True for a value that is exactly one `${VAR:?message}` (or `${VAR?message}`)."""
    found = substitutions(value)
    return (
        len(found) == 1
        and found[0][1] in {":?", "?"}
        and _SUBSTITUTION.fullmatch(value.strip()) is not None
    )


def command_argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source for every volume entry (short or long syntax)."""
    result: dict[str, str] = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            result[entry["target"]] = entry.get("source", "")
        else:
            source, target, *_ = entry.split(":")
            result[target] = source
    return result


def published_host_ports(service: dict[str, Any]) -> list[str]:
    """Host-side ports a service publishes (a bare container port publishes a random one)."""
    host_ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if entry.get("published"):
                host_ports.append(str(entry["published"]))
        elif ":" in str(entry):
            host_ports.append(str(entry).rsplit(":", 1)[0])
    return host_ports


def expand_build_args(instructions: list[tuple[str, str]], text: str) -> str:
    """`text` with `$NAME` / `${NAME}` replaced by the defaults of the Dockerfile's ARGs."""
    defaults = dict(
        args.split("=", 1) for keyword, args in instructions if keyword == "ARG" and "=" in args
    )
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), text)


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    # safe_load resolves anchors, aliases and `<<` merge keys, as docker compose does.
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def compose_strings(compose: dict[str, Any]) -> str:
    return "\n".join(strings(compose))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def documented_vars() -> dict[str, str]:
    documented = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if match:
            documented[match.group(1)] = match.group(2)
    return documented


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def scanned_conn_ids() -> set[str]:
    files = [*ROOT.glob("dags/*.py"), *ROOT.glob("plugins/cem_warehouse/**/*.py")]
    return {conn_id for path in files for conn_id in find_conn_ids(path.read_text())}


# --- the helpers themselves -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('PostgresHook(postgres_conn_id="cem_warehouse")', {"cem_warehouse"}),
        ("CRM_CONN_ID = 'cem_source_crm'", {"cem_source_crm"}),
        ('SALES_CONN_ID: Final = "cem_source_sales"', {"cem_source_sales"}),
        ('def hook(conn_id: str = "cem_source_surveys"): ...', {"cem_source_surveys"}),
        ('{"conn_id": "cem_source_crm"}', {"cem_source_crm"}),
        ('conn_id="postgres_default"', set()),
        ('name = "cem_warehouse"', set()),
    ],
)
def test_find_conn_ids(source: str, expected: set[str]) -> None:
    assert find_conn_ids(source) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${A:?set A}", True),
        ("${A?set A}", True),
        ("${A:-x}", False),
        ("${A}", False),
        ("hunter2", False),
        ("x${A:?set A}", False),
    ],
)
def test_is_required_substitution(value: str, expected: bool) -> None:
    assert is_required_substitution(value) is expected


# --- services ---------------------------------------------------------------------------------


def test_stack_has_every_service(services: dict[str, Any]) -> None:
    expected = {"warehouse", "airflow-metadata", "redis", *AIRFLOW_COMMANDS}
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"


@pytest.mark.parametrize("name", ["warehouse", "airflow-metadata"])
def test_postgres_services_keep_data_on_their_own_named_volume(
    compose: dict[str, Any], services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert str(service["image"]).startswith("postgres:16")
    volume = mounts(service).get("/var/lib/postgresql/data")
    assert volume, f"{name} must keep /var/lib/postgresql/data on a volume"
    assert "/" not in volume and volume in (compose.get("volumes") or {}), (
        f"{name} data must be a named volume declared under top-level volumes"
    )
    assert "pg_isready" in " ".join(map(str, service["healthcheck"]["test"]))


def test_warehouse_and_metadata_are_separate_databases(services: dict[str, Any]) -> None:
    warehouse_data = mounts(services["warehouse"])["/var/lib/postgresql/data"]
    metadata_data = mounts(services["airflow-metadata"])["/var/lib/postgresql/data"]
    assert warehouse_data != metadata_data


def test_redis_broker_has_healthcheck(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    assert "ping" in " ".join(map(str, redis["healthcheck"]["test"]))


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_runs_its_component(services: dict[str, Any], name: str) -> None:
    assert command_argv(services[name]) == AIRFLOW_COMMANDS[name]


def test_worker_can_scale(services: dict[str, Any]) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker, "container_name stops --scale airflow-worker=N"
    assert not published_host_ports(worker), "a fixed host port stops --scale airflow-worker=N"


def test_api_server_is_published_on_8080(services: dict[str, Any]) -> None:
    ports = [str(entry) for entry in services["airflow-apiserver"].get("ports", [])]
    assert any(entry.endswith(":8080") for entry in ports), ports


# --- image and mounts -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_builds_the_project_image(services: dict[str, Any], name: str) -> None:
    build = services[name].get("build")
    assert build is not None, f"{name} must build from the project's Dockerfile"
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE


def test_airflow_services_share_one_image(services: dict[str, Any]) -> None:
    images = {services[name].get("image") for name in AIRFLOW_COMMANDS}
    assert len(images) == 1, f"Airflow services tag different images: {images}"


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_mounts_project_where_airflow_looks(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    by_target = mounts(service)
    for folder in PROJECT_MOUNTS:
        target = f"{PROJECT_DIR}/{folder}"
        assert by_target.get(target) == f"./{folder}", f"{name} must mount ./{folder}:{target}"
    env = environment(service)
    assert by_target.get(env.get("AIRFLOW__CORE__DAGS_FOLDER", "")) == "./dags"
    assert by_target.get(env.get("AIRFLOW__CORE__PLUGINS_FOLDER", "")) == "./plugins"


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_core_settings(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() == "false"
    for key in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    ):
        assert env.get(key), f"{name} lacks {key}"


# --- Celery and the metadata database ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_celery_executor_uses_redis_and_metadata_db(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    assert env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor"

    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis"
    assert broker.hostname in services and str(services[broker.hostname]["image"]).startswith(
        "redis"
    )
    assert broker.port == 6379

    backend = split_uri(env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert backend["scheme"] == "db+postgresql"
    assert backend["host"] == "airflow-metadata"


@pytest.mark.parametrize(
    "key", ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"]
)
def test_metadata_uris_match_the_metadata_service(services: dict[str, Any], key: str) -> None:
    metadata_env = environment(services["airflow-metadata"])
    uri = split_uri(environment(services["airflow-scheduler"])[key])
    assert (uri["host"], uri["port"]) == ("airflow-metadata", 5432)
    assert uri["user"] == metadata_env["POSTGRES_USER"]
    assert uri["password"] == metadata_env["POSTGRES_PASSWORD"]
    assert uri["database"] == metadata_env["POSTGRES_DB"]


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_execution_api_points_at_the_api_server(services: dict[str, Any], name: str) -> None:
    url = urlsplit(environment(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname in services
    assert command_argv(services[url.hostname]) == AIRFLOW_COMMANDS["airflow-apiserver"]
    assert url.port == 8080 and url.path.rstrip("/") == "/execution"


def test_init_runs_before_everything_else(services: dict[str, Any]) -> None:
    init_deps = services["airflow-init"].get("depends_on", {})
    assert init_deps.get("airflow-metadata", {}).get("condition") == "service_healthy"
    for name in LONG_RUNNING:
        deps = services[name].get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        assert deps.get("airflow-init", {}).get("condition") == "service_completed_successfully"
        for needed in ("airflow-metadata", "redis", "warehouse"):
            assert deps.get(needed, {}).get("condition") == "service_healthy", (name, needed)


def test_healthy_conditions_have_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if isinstance(spec, dict) and spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, but it has no healthcheck"
                )


# --- connections ------------------------------------------------------------------------------


def test_dag_connection_ids_are_provided(services: dict[str, Any]) -> None:
    conn_ids = REQUIRED_CONN_IDS | scanned_conn_ids()
    for name in AIRFLOW_COMMANDS:
        env = environment(services[name])
        missing = sorted(cid for cid in conn_ids if f"AIRFLOW_CONN_{cid.upper()}" not in env)
        assert not missing, f"{name} lacks AIRFLOW_CONN_* for {missing}"


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_warehouse_connection_points_at_the_warehouse(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    assert env.get("CEM_WAREHOUSE_URL") == env["AIRFLOW_CONN_CEM_WAREHOUSE"], (
        "CEM_WAREHOUSE_URL must equal the Airflow connection"
    )
    uri = split_uri(env["AIRFLOW_CONN_CEM_WAREHOUSE"])
    assert uri["scheme"] in {"postgresql", "postgres"}
    assert (uri["host"], uri["port"]) == ("warehouse", 5432)
    warehouse_env = environment(services["warehouse"])
    assert uri["user"] == warehouse_env["POSTGRES_USER"]
    assert uri["password"] == warehouse_env["POSTGRES_PASSWORD"]
    assert uri["database"] == warehouse_env["POSTGRES_DB"]


@pytest.mark.parametrize("conn_id", sorted(REQUIRED_CONN_IDS - {"cem_warehouse"}))
def test_source_connections_come_from_env_with_empty_default(
    services: dict[str, Any], documented_vars: dict[str, str], conn_id: str
) -> None:
    value = environment(services["airflow-worker"])[f"AIRFLOW_CONN_{conn_id.upper()}"]
    found = substitutions(value)
    assert len(found) == 1 and _SUBSTITUTION.fullmatch(value), value
    variable, operator, default = found[0]
    assert operator in {":-", "-"} and default == "", f"{conn_id} needs an empty default"
    assert variable in documented_vars


# --- secrets and .env.example -----------------------------------------------------------------


def test_secret_settings_are_required_variables(services: dict[str, Any]) -> None:
    checked = 0
    for name, service in services.items():
        for key, value in environment(service).items():
            if _SECRET_NAME.search(key):
                checked += 1
                assert is_required_substitution(value), (
                    f"{name}: {key} must be ${{VAR:?message}}, not a literal or a default"
                )
    assert checked >= 5, "expected the passwords, fernet key, JWT and API secrets"


def test_no_password_literal_in_uris(compose: dict[str, Any]) -> None:
    passwords = [split_uri(text)["password"] for text in strings(compose) if "://" in text]
    assert [password for password in passwords if password], "expected URIs with a password"
    for password in filter(None, passwords):
        assert is_required_substitution(password), f"literal password in a URI: {password!r}"


def test_secret_variables_never_have_defaults(compose_text: str) -> None:
    # Raw text on purpose: also catches a defaulted secret in a comment that someone may uncomment.
    for variable, operator, _ in substitutions(compose_text):
        if _SECRET_NAME.search(variable):
            assert operator in {":?", "?"}, f"${{{variable}}} must be required, not defaulted"


def test_every_variable_is_documented(
    compose_strings: str, documented_vars: dict[str, str]
) -> None:
    used = {variable for variable, _, _ in substitutions(compose_strings)}
    assert not _BARE_SUBSTITUTION.findall(compose_strings), "use ${VAR}, not $VAR"
    assert used, "expected ${...} substitutions"
    assert not used - set(documented_vars), f"undocumented: {sorted(used - set(documented_vars))}"
    assert not set(documented_vars) - used, f"unused: {sorted(set(documented_vars) - used)}"


def test_env_example_holds_no_secret_values(
    compose_strings: str, documented_vars: dict[str, str]
) -> None:
    required = {var for var, op, _ in substitutions(compose_strings) if op in {":?", "?"}}
    assert required
    for variable in required:
        assert documented_vars.get(variable) == "", f".env.example must leave {variable} empty"


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_uses_python_slim(dockerfile: list[tuple[str, str]]) -> None:
    base = expand_build_args(dockerfile, next(a for kw, a in dockerfile if kw == "FROM"))
    assert re.match(r"python:3\.1[1-9][.\d]*-slim", base), base


def test_dockerfile_installs_the_lock_before_the_code(dockerfile: list[tuple[str, str]]) -> None:
    copy_lock = next(
        i for i, (kw, args) in enumerate(dockerfile) if kw == "COPY" and "requirements.lock" in args
    )
    install_lock = next(
        i
        for i, (kw, args) in enumerate(dockerfile)
        if kw == "RUN" and re.search(r"uv pip (install|sync)\b.*requirements\.lock", args)
    )
    copy_code = next(
        i for i, (kw, args) in enumerate(dockerfile) if kw == "COPY" and "plugins" in args
    )
    install_project = next(
        i
        for i, (kw, args) in enumerate(dockerfile)
        if kw == "RUN" and re.search(r"uv pip install\b.*--no-deps\b.*(-e )?\.(\s|$)", args)
    )
    assert copy_lock < install_lock < copy_code < install_project


def test_dockerfile_compiles_the_dependencies_it_cannot_cache(
    dockerfile: list[tuple[str, str]],
) -> None:
    """With PYTHONDONTWRITEBYTECODE=1 nothing compiled at run time is kept, so every task
    process would compile Airflow, dbt and GX from source unless the install did it once."""
    env = " ".join(args for kw, args in dockerfile if kw == "ENV")
    install_lock = next(
        args
        for kw, args in dockerfile
        if kw == "RUN" and re.search(r"uv pip (install|sync)\b.*requirements\.lock", args)
    )
    if re.search(r"PYTHONDONTWRITEBYTECODE=1\b", env):
        assert "--compile-bytecode" in install_lock or "UV_COMPILE_BYTECODE=1" in env, install_lock


def test_dockerfile_pins_the_makefile_uv(dockerfile: list[tuple[str, str]]) -> None:
    makefile_uv = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", MAKEFILE.read_text(), re.M)
    assert makefile_uv
    runs = expand_build_args(dockerfile, " ".join(a for kw, a in dockerfile if kw == "RUN"))
    assert re.search(rf"pip install \"?uv=={re.escape(makefile_uv.group(1))}\b", runs), runs


def test_dockerfile_copies_project_folders(dockerfile: list[tuple[str, str]]) -> None:
    workdir = "/"
    copied: set[str] = set()
    for keyword, args in dockerfile:
        if keyword == "WORKDIR":
            workdir = args
        elif keyword == "COPY":
            parts = [part for part in args.split() if not part.startswith("--")]
            *sources, dest = parts
            base = posixpath.normpath(posixpath.join(workdir, dest))
            for source in sources:
                copied.add(f"{posixpath.normpath(source)} -> {base}")
    for folder in PROJECT_MOUNTS:
        assert f"{folder} -> {PROJECT_DIR}/{folder}" in copied, f"{folder}/ not copied"


def test_dockerfile_runs_as_non_root_airflow(dockerfile: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in dockerfile if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    setup = " ".join(args for keyword, args in dockerfile if keyword in {"RUN", "ARG"})
    assert re.search(r"useradd\b.*--uid\b", setup) and f"AIRFLOW_UID={AIRFLOW_UID}" in setup
    env = " ".join(args for keyword, args in dockerfile if keyword == "ENV")
    assert "AIRFLOW_HOME=/opt/airflow" in env


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_compose_does_not_run_airflow_as_root(services: dict[str, Any], name: str) -> None:
    user = str(services[name].get("user", ""))
    uid = re.sub(r"\$\{\w+:-(\w+)\}", r"\1", user).split(":")[0]
    assert uid not in {"0", "root"}, f"{name} runs as root"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".venv", ".cem", ".git", "dbt_project/target"):
        assert needed in patterns, f".dockerignore must exclude {needed}"
    assert patterns & {"__pycache__", "**/__pycache__"}


def test_lock_ships_the_celery_executor() -> None:
    pinned = {
        line.split("==", 1)[0].strip().lower()
        for line in LOCK_FILE.read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    assert {"apache-airflow-providers-celery", "celery", "redis"} <= pinned
