"""Suite-wide hooks: the longest independent commands run beside the tests (background.py).

When collection ends, each test module that defines `background_jobs(items, tmp)` is asked
which long commands its selected tests will need; they are queued in the order the tests will
need them, and a worker thread runs them one at a time while the other tests run. The quick
benchmark (test_benchmarks_smoke.py) is moved to the end of the run, so that its minutes
overlap everything else.
"""

from __future__ import annotations

import pytest

from background import BACKGROUND

LAST = "test_benchmarks_smoke.py"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    last = [item for item in items if item.path.name == LAST]
    if last:
        items[:] = [item for item in items if item.path.name != LAST] + last


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    modules: dict = {}
    for item in session.items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "background_jobs"):
            modules.setdefault(module, []).append(item)
    for module, items in modules.items():
        for key, job in module.background_jobs(items, BACKGROUND.tmp).items():
            BACKGROUND.add(key, job)
    BACKGROUND.start()


def pytest_sessionfinish(session):
    BACKGROUND.stop()


@pytest.fixture(scope="session")
def background():
    return BACKGROUND
