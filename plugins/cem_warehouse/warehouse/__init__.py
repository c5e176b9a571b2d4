"""The warehouse: where it is, the embedded default, connections, bootstrap."""
