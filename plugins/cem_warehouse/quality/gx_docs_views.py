"""GX Data Docs views that keep their compiled Jinja templates between builds.

GX builds a new Jinja environment for every page it renders and compiles its ~50
templates each time: about a second per batch, more than validating a million rows.
These views are GX's own (named in the site config, GX's way to choose views) with a
Jinja bytecode cache in the state directory, like Python's ``__pycache__``: templates
compile once per machine and GX version (the cache is keyed by each template's source).
Only imported by GX when it builds Data Docs, after GX itself is loaded.
"""

from __future__ import annotations

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import FileSystemBytecodeCache

from cem_warehouse import paths

_cache: FileSystemBytecodeCache | None = None


def template_cache_dir():
    return paths.state_dir() / "gx_template_cache"


def _bytecode_cache() -> FileSystemBytecodeCache:
    global _cache
    if _cache is None:
        directory = template_cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        _cache = FileSystemBytecodeCache(str(directory))
    return _cache


class CachedJinjaPageView(DefaultJinjaPageView):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _bytecode_cache()


class CachedJinjaIndexPageView(DefaultJinjaIndexPageView):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _bytecode_cache()
