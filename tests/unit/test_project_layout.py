"""Promises the repository makes to a new user: CI, the two commands, the README's commands."""

import re
import shlex

from cem_warehouse.cli import build_parser


def test_ci_runs_make_test(project_root):
    script = (project_root / ".ci" / "run").read_text()
    assert re.search(r"^make test$", script, re.MULTILINE)


def test_makefile_has_the_two_setup_commands_and_installs_from_the_lock(project_root):
    makefile = (project_root / "Makefile").read_text()
    assert re.search(r"^demo: install$", makefile, re.MULTILINE)
    assert re.search(r"^test: install$", makefile, re.MULTILINE)
    assert "uv pip sync" in makefile and "requirements.lock" in makefile


def test_lock_pins_every_package_exactly(project_root):
    lines = [
        line.strip()
        for line in (project_root / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines, "requirements.lock is empty"
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    pins = dict(line.split("==") for line in lines)
    assert pins["apache-airflow"].startswith("3.3.")
    assert pins["dbt-core"].startswith("1.11.")
    assert pins["dbt-postgres"].startswith("1.11.")
    assert pins["great-expectations"].startswith("1.24.")
    assert pins["astronomer-cosmos"].startswith("1.15.")


def test_readme_shows_exactly_the_two_setup_commands(project_root):
    readme = (project_root / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make \w+", setup, re.MULTILINE)
    assert commands == ["make demo", "make test"]


def test_every_cem_command_in_the_docs_parses(project_root):
    """A `cem ...` line in the README or docs must be a real command with real options."""
    parser = build_parser()
    documents = [project_root / "README.md", *sorted((project_root / "docs").rglob("*.md"))]
    seen = 0
    for document in documents:
        for line in re.findall(
            r"(?:^|\s|`)(?:\.venv/bin/)?cem ([a-z][^`\n|#]*)", document.read_text(), re.MULTILINE
        ):
            args = shlex.split(line.strip().rstrip("."))
            if not args or args[0] not in parser._subparsers._group_actions[0].choices:
                continue
            parser.parse_args(args)
            seen += 1
    assert seen >= 3
