"""The sync and async clients are written side by side (one sends and waits, the other
awaits): every resource and method of one must exist in the other with the same parameters,
so that a change made to one and not the other fails here rather than for a user."""

from __future__ import annotations

import inspect

import pytest

from aiaas.client import _async, _sync

PAIRS = [
    ("Client", "AsyncClient"),
    ("PredictionJob", "AsyncPredictionJob"),
    ("TrainingJob", "AsyncTrainingJob"),
] + [
    (name, name)
    for name, value in vars(_sync).items()
    if inspect.isclass(value)
    and issubclass(value, _sync._Resource)
    and value is not _sync._Resource
]


# asyncio's own naming: an async close is aclose (as httpx.AsyncClient has it).
RENAMED = {"aclose": "close"}


def public(cls: type) -> dict[str, list[tuple[str, object, object]]]:
    found = {}
    for name, member in vars(cls).items():
        if (name.startswith("_") and name != "__init__") or not callable(member):
            continue
        parameters = inspect.signature(member).parameters.values()
        found[RENAMED.get(name, name)] = [
            (p.name, p.kind, p.default) for p in parameters if not p.name.startswith("_")
        ]
    return found


@pytest.mark.parametrize(("sync_name", "async_name"), PAIRS)
def test_the_async_client_mirrors_the_sync_one(sync_name: str, async_name: str) -> None:
    sync_members = public(getattr(_sync, sync_name))
    async_members = public(getattr(_async, async_name))
    assert sorted(sync_members) == sorted(async_members)
    for name, parameters in sync_members.items():
        if name == "__init__":  # each takes its own client class
            continue
        assert async_members[name] == parameters, name


def test_every_resource_is_on_both_clients() -> None:
    assert len(PAIRS) > 10
    for name, _ in PAIRS[3:]:
        assert hasattr(_async, name)
