"""Fixtures for the doctor tests: one real Prometheus per session holding tests/helpers/doctor.py's
history, stopped by its handle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import doctor, prom


@pytest.fixture(scope="session")
def doctor_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("prometheus-doctor")
    data = work / "data"
    prom.prom_backfill(prom.prom_openmetrics(doctor.history(), now=doctor.NOW), data_dir=data, work=work)
    with prom.prom_server(work, data_dir=data) as server:
        yield server
