"""Publish the dbt docs site (``dbt docs generate``) for the marts analysts actually read.

The site goes to ``.cem/dbt_docs/`` (or ``CEM_DBT_DOCS_DIR``): ``index.html`` is dbt's
static page (``--static``: one file with the manifest and catalog inside, opens from disk
with no server), next to ``manifest.json`` and ``catalog.json`` for tools that read them.
It is generated with the marts schema pointing at ``marts``, so the catalog describes the
published tables, not the build schema.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cem_warehouse import paths
from cem_warehouse.transform.dbt import dbt_target_dir, run_dbt
from cem_warehouse.transform.publish import PUBLISHED_SCHEMA
from cem_warehouse.warehouse.settings import WarehouseLocation

DOCS_DIR_ENV = "CEM_DBT_DOCS_DIR"


def dbt_docs_dir() -> Path:
    override = os.environ.get(DOCS_DIR_ENV)
    return Path(override) if override else paths.state_dir() / "dbt_docs"


def publish_dbt_docs(location: WarehouseLocation) -> Path:
    """Generate the docs against the published marts and copy them to :func:`dbt_docs_dir`."""
    run_dbt(
        location,
        [
            "docs",
            "generate",
            "--static",
            "--vars",
            json.dumps({"marts_build_schema": PUBLISHED_SCHEMA}),
        ],
    )
    target = dbt_target_dir()
    site = dbt_docs_dir()
    site.mkdir(parents=True, exist_ok=True)
    for source, name in (
        ("static_index.html", "index.html"),
        ("manifest.json", "manifest.json"),
        ("catalog.json", "catalog.json"),
    ):
        # Copy then rename: a reader never opens a half-written page.
        partial = site / f".{name}.partial"
        shutil.copyfile(target / source, partial)
        partial.replace(site / name)
    return site / "index.html"
