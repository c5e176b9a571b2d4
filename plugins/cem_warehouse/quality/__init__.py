"""Great Expectations checks that guard every load, run as SQL inside PostgreSQL."""
