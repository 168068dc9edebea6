"""One real MLflow server for the registry tests (about 10 s to start): each test names its own prompts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import mlflow_proc
from tests.helpers.gitops import eval_prometheus, gitops  # noqa: F401  (fixtures used by test_outage.py)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflow_proc.Server]:
    with mlflow_proc.server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
