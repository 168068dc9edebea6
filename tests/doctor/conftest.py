"""Fixtures for the doctor tests: one real Prometheus per session holding tests/helpers/doctor.py's
history, stopped by its handle."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.helpers import doctor, prom


@pytest.fixture(scope="session")
def doctor_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("prometheus-doctor")
    data = work / "data"
    # the history ends now, not when the tests were collected: plan and doctor look at the last minutes
    now = int(time.time()) // 60 * 60
    prom.prom_backfill(prom.prom_openmetrics(doctor.history(), now=now), data_dir=data, work=work)
    with prom.prom_server(work, data_dir=data) as server:
        yield server
