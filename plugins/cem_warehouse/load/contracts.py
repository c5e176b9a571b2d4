"""What a raw entity looks like to the loader: columns, types, key, version, deletes.

Each source module declares its entities with these classes (streams as data); the
loader, the raw tables and the quarantine tables are all derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "text"  # a PostgreSQL type name
    nullable: bool = True
    # A locked column's type is part of the contract: a batch that changes it is blocked.
    locked: bool = False


# The kinds of index raw may keep on _loaded_at (EntityContract.loaded_at_index).
LOADED_AT_INDEX_KINDS = ("brin", "btree")


@dataclass(frozen=True)
class EntityContract:
    source: str
    entity: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]
    # Newer versions of a record win, whatever order batches arrive in.
    version_column: str | None = None
    # The cursor the extractor advances (usually the same as version_column).
    cursor_column: str | None = None
    # Where the source deletes, raw keeps the row and sets this flag.
    soft_delete_column: str | None = None
    description: str = ""
    # Event times that cannot be later than the load (a day of clock skew allowed).
    not_in_future: tuple[str, ...] = field(default_factory=tuple)
    # How raw indexes _loaded_at for "rows loaded since" reads: "brin" (a few pages, next to
    # nothing to maintain) where a publish's rows land together at the end of the table;
    # "btree" where updates of existing rows land all over it (see load.tables).
    loaded_at_index: str = "brin"

    def __post_init__(self) -> None:
        if self.loaded_at_index not in LOADED_AT_INDEX_KINDS:
            raise ValueError(
                f"{self.entity}: loaded_at_index must be one of {', '.join(LOADED_AT_INDEX_KINDS)}, "
                f"not {self.loaded_at_index!r}"
            )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def raw_table(self) -> str:
        """``raw.<entity>``: entity names are unique across sources."""
        return self.entity
