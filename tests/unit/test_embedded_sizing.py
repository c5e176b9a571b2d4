"""How much memory the embedded server keeps as its own cache (shared_buffers)."""

import pytest

from cem_warehouse.errors import ConfigurationError
from cem_warehouse.warehouse.embedded import SHARED_BUFFERS_ENV, shared_buffers_mb

GIB = 1024**3


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(SHARED_BUFFERS_ENV, raising=False)


@pytest.mark.parametrize(
    ("memory", "expected_mb"),
    [
        (24 * GIB, 6144),  # a quarter of the machine
        (2 * GIB, 512),
        (256 * 1024**2, 128),  # never below PostgreSQL's own default
        (256 * GIB, 8192),  # nor above 8 GB
    ],
)
def test_a_quarter_of_memory_within_bounds(memory, expected_mb):
    assert shared_buffers_mb(memory) == expected_mb


def test_the_setting_overrides_the_machine_size(monkeypatch):
    monkeypatch.setenv(SHARED_BUFFERS_ENV, "1024")
    assert shared_buffers_mb(24 * GIB) == 1024


@pytest.mark.parametrize("value", ["6GB", "0", "-5", "lots"])
def test_a_bad_setting_says_what_to_set(monkeypatch, value):
    monkeypatch.setenv(SHARED_BUFFERS_ENV, value)
    with pytest.raises(ConfigurationError, match=f"{SHARED_BUFFERS_ENV}=.* such as 1024"):
        shared_buffers_mb(24 * GIB)


def test_the_machine_size_is_read_when_not_given():
    assert 128 <= shared_buffers_mb() <= 8192
