"""The sources config: documented defaults, clear errors, disabled sources."""

import pytest

from cem_warehouse.errors import ConfigurationError
from cem_warehouse.load.policy import load_policies, source_policy
from cem_warehouse.load.schedules import schedule_for


def test_shipped_config_covers_every_source_with_valid_settings():
    policies = load_policies()
    assert set(policies) == {"crm", "sales", "surveys"}
    assert policies["surveys"].allow_empty is False
    assert policies["sales"].schema_drift == "block"
    assert all(0 < p.bad_row_threshold < 1 for p in policies.values())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sources:\n  crm:\n    schema_drift: maybe\n", "schema_drift is 'maybe'"),
        ("sources:\n  crm:\n    bad_row_threshold: 2\n", "must be between 0 and 1"),
        ("sources:\n  crm:\n    thresold: 0.1\n", "unknown setting(s) ['thresold']"),
        ("sources: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, monkeypatch, text, fragment):
    path = tmp_path / "sources.yml"
    path.write_text(text)
    monkeypatch.setenv("CEM_SOURCES_CONFIG", str(path))
    with pytest.raises(ConfigurationError) as error:
        load_policies()
    assert fragment in str(error.value)
    assert str(path) in str(error.value)


def test_disabled_source_has_no_schedule_and_loads_nothing(tmp_path, monkeypatch):
    path = tmp_path / "sources.yml"
    path.write_text("sources:\n  crm:\n    enabled: false\n  sales: {}\n")
    monkeypatch.setenv("CEM_SOURCES_CONFIG", str(path))
    assert schedule_for("crm") is None
    assert schedule_for("sales") == "@daily"
    assert source_policy("crm").enabled is False

    from cem_warehouse.load.ingest import run_source

    def must_not_extract(*args):
        raise AssertionError("a disabled source must not be read")

    run = run_source(None, "crm", [], must_not_extract)  # no warehouse needed: nothing happens
    assert run.enabled is False and run.outcomes == []


def test_missing_source_entry_is_named(tmp_path, monkeypatch):
    path = tmp_path / "sources.yml"
    path.write_text("sources:\n  sales: {}\n")
    monkeypatch.setenv("CEM_SOURCES_CONFIG", str(path))
    with pytest.raises(ConfigurationError, match="no entry for source 'crm'"):
        source_policy("crm")
