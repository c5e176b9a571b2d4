"""Whole-number settings from the environment: the value, the default, or one clear refusal."""

from __future__ import annotations

import pytest

from cem_warehouse.env import whole_number_from_env
from cem_warehouse.errors import ConfigurationError
from cem_warehouse.warehouse.embedded import PORT_ENV, _configured_port


def test_a_set_value_is_used_and_an_unset_or_empty_one_gives_the_default(monkeypatch):
    monkeypatch.setenv("CEM_TEST_COUNT", "3")
    assert whole_number_from_env("CEM_TEST_COUNT", 2, meaning="a count") == 3
    monkeypatch.setenv("CEM_TEST_COUNT", "")
    assert whole_number_from_env("CEM_TEST_COUNT", 2, meaning="a count") == 2
    monkeypatch.delenv("CEM_TEST_COUNT")
    assert whole_number_from_env("CEM_TEST_COUNT", 2, meaning="a count") == 2


@pytest.mark.parametrize("raw", ["two", "1.5", "0", "-3"])
def test_a_value_that_is_not_an_allowed_whole_number_is_refused_naming_the_fix(monkeypatch, raw):
    monkeypatch.setenv("CEM_TEST_COUNT", raw)
    with pytest.raises(
        ConfigurationError, match=r"CEM_TEST_COUNT=.*set it to a count, or unset it for 2"
    ):
        whole_number_from_env("CEM_TEST_COUNT", 2, meaning="a count")


@pytest.mark.parametrize("raw", ["80", "70000", "port"])
def test_the_embedded_port_must_be_an_unprivileged_port(monkeypatch, raw):
    monkeypatch.setenv(PORT_ENV, raw)
    with pytest.raises(ConfigurationError, match=rf"{PORT_ENV}=.*1024-65535"):
        _configured_port()
    monkeypatch.setenv(PORT_ENV, "55433")
    assert _configured_port() == 55433
