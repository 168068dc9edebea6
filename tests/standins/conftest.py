"""Fixtures for the stand-in tests: a real Prometheus per module (empty TSDB, scraping every second
whatever a test points it at with `live.scrape()`), stopped by its handle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import prom


@pytest.fixture(scope="module")
def prom_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("prometheus-live")
    with prom.prom_server(work, data_dir=work / "data") as server:
        yield server
