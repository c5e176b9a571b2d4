"""CEM_WAREHOUSE_URL parsing: good URLs give their parts, bad ones one clear line."""

import pytest

from cem_warehouse.errors import ConfigurationError
from cem_warehouse.warehouse.settings import configured_warehouse, parse_warehouse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://alice:s3cret@db.example.com:6543/cx",
            ("db.example.com", 6543, "alice", "s3cret", "cx"),
        ),
        ("postgres://bob@localhost/warehouse", ("localhost", 5432, "bob", "", "warehouse")),
        ("postgresql://u:p%40ss%2Fword@h/d", ("h", 5432, "u", "p@ss/word", "d")),
        ("  postgresql://u@127.0.0.1:5432/postgres  ", ("127.0.0.1", 5432, "u", "", "postgres")),
    ],
)
def test_valid_urls_are_parsed(url, expected):
    location = parse_warehouse_url(url)
    assert (
        location.host,
        location.port,
        location.user,
        location.password,
        location.dbname,
    ) == expected


def test_url_round_trips_with_special_characters():
    location = parse_warehouse_url("postgresql://u:p%40ss%2Fword@h:1/d?sslmode=require")
    assert parse_warehouse_url(location.url) == location
    assert location.sslmode == "require"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u@h/d", "must start with postgresql://"),
        ("localhost:5432/db", "must start with postgresql://"),
        ("postgresql:///db", "names no host"),
        ("postgresql://u@h", "names no database"),
        ("postgresql://u@h/", "names no database"),
        ("postgresql://u@h:99999/d", "not a valid PostgreSQL URL"),
        ("postgresql://u@h:abc/d", "not a valid PostgreSQL URL"),
        ("postgresql://u@h/d?foo=bar", "unsupported option 'foo'"),
        ("   ", "is empty"),
    ],
)
def test_malformed_urls_raise_one_clear_line(url, fragment):
    with pytest.raises(ConfigurationError) as error:
        parse_warehouse_url(url)
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message
    assert "CEM_WAREHOUSE_URL" in message


def test_password_never_appears_in_redacted_url():
    location = parse_warehouse_url("postgresql://alice:topsecret@h/d")
    assert "topsecret" not in location.redacted_url
    assert "***" in location.redacted_url


def test_unset_or_empty_variable_means_embedded(monkeypatch):
    monkeypatch.delenv("CEM_WAREHOUSE_URL", raising=False)
    assert configured_warehouse() is None
    monkeypatch.setenv("CEM_WAREHOUSE_URL", "")
    assert configured_warehouse() is None
    monkeypatch.setenv("CEM_WAREHOUSE_URL", "postgresql://u@h/d")
    assert configured_warehouse().host == "h"
