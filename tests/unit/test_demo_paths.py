"""The demo's last line names where the docs really are, CEM_HOME included."""

from __future__ import annotations

from pathlib import Path

from cem_warehouse.demo import _shown
from cem_warehouse.quality.gx_runner import data_docs_dir
from cem_warehouse.transform.docs import dbt_docs_dir


def test_docs_under_the_working_directory_are_shown_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEM_HOME", str(tmp_path / ".cem"))
    monkeypatch.delenv("CEM_DBT_DOCS_DIR", raising=False)  # the test session sets one
    assert _shown(dbt_docs_dir() / "index.html") == str(Path(".cem/dbt_docs/index.html"))


def test_docs_moved_by_cem_home_are_shown_where_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path.parent / f"{tmp_path.name}_home"
    monkeypatch.setenv("CEM_HOME", str(elsewhere))
    monkeypatch.delenv("CEM_GX_DOCS_DIR", raising=False)
    assert _shown(data_docs_dir() / "index.html") == str(
        elsewhere.resolve() / "gx_data_docs" / "index.html"
    )
