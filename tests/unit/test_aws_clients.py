"""The AWS clients the functions make: botocore's, from one session, without botocore's scan of every
service it has data for before each first load (a cold start's 10 ms, docs/benchmarks.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import UnknownServiceError
from botocore.session import get_session

from event_router.core import aws, service_data


@pytest.fixture
def directories_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every directory listed from now on (``os.listdir`` and ``os.scandir``)."""
    read: list[str] = []
    listdir, scandir = os.listdir, os.scandir

    def counted(real: Any) -> Any:
        def reading(path: Any = ".") -> Any:
            read.append(str(path))
            return real(path)

        return reading

    monkeypatch.setattr(os, "listdir", counted(listdir))
    monkeypatch.setattr(os, "scandir", counted(scandir))
    return read


def test_the_first_clients_of_a_container_read_a_handful_of_directories(
    monkeypatch: pytest.MonkeyPatch, directories_read: list[str]
) -> None:
    monkeypatch.setattr(aws, "_SESSION", [])  # a new container

    aws.client("sqs")
    aws.client("secretsmanager")

    # botocore's own loader lists each of its 400-odd service directories first, twice
    assert len(directories_read) < 12, directories_read


def test_a_service_that_botocore_does_not_know_is_still_refused_by_name() -> None:
    session = get_session()
    service_data.install(session)

    with pytest.raises(UnknownServiceError):
        session.create_client("no-such-service", region_name="eu-west-2")


def test_aws_data_path_is_searched_first_as_by_botocores_own_loader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    (tmp_path / "example").mkdir()  # a service's models of one's own
    session = get_session()
    service_data.install(session)
    loader = session.get_component("data_loader")

    assert loader.search_paths[0] == str(tmp_path)
    assert {"example", "sqs", "secretsmanager"} <= set(loader.list_available_services("service-2"))
