from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from aiaas.serving import BatcherPool, BatchParts, RuntimeCache, ServingSpec, make_executor
from aiaas.serving.runtime import ModelRuntime
from tests.serving.helpers import load_runtime, make_spec, sample_shape


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def test_one_batcher_per_key_with_the_spec_s_knobs(executor: ThreadPoolExecutor) -> None:
    seen: list[tuple[str, int]] = []

    def run_batch(spec: ServingSpec, batch: np.ndarray) -> np.ndarray:
        seen.append((spec.weights, len(batch)))
        return batch * 2

    batches: list[int] = []
    pool = BatcherPool(BatchParts(run_batch=run_batch, executor=executor, on_batch=batches.append))
    a = dataclasses.replace(make_spec("mlp", weights="a"), max_batch_size=3, max_delay_ms=5.0)
    b = make_spec("mlp", weights="b")
    assert pool.get(a) is pool.get(dataclasses.replace(a, labels=None))
    assert pool.get(a) is not pool.get(b)
    assert len(pool) == 2

    async def main() -> None:
        x = np.ones((2, 64), dtype=np.float32)
        np.testing.assert_array_equal(await pool.get(a).submit(x), x * 2)
        np.testing.assert_array_equal(await pool.get(b).submit(x), x * 2)
        await pool.close_all()

    asyncio.run(main())
    assert seen == [("a", 2), ("b", 2)]
    assert batches == [2, 2]
    assert len(pool) == 0


def test_models_served_through_cache_and_pool(executor: ThreadPoolExecutor) -> None:
    specs = [make_spec(name, weights=name) for name in ("mlp", "cnn", "rnn")]
    loaded = {spec.weights: load_runtime(spec)[0] for spec in specs}
    cache = RuntimeCache(10**9, lambda spec: loaded[spec.weights])

    def run_batch(spec: ServingSpec, batch: np.ndarray) -> np.ndarray:
        return cache.get(spec).predict(batch)

    pool = BatcherPool(BatchParts(run_batch=run_batch, executor=executor))
    rng = np.random.default_rng(0)
    inputs = {
        spec.weights: [
            rng.standard_normal((1 + i % 3, *sample_shape(spec))).astype(np.float32)
            for i in range(12)
        ]
        for spec in specs
    }

    async def main() -> dict[str, list[np.ndarray]]:
        results = {
            spec.weights: asyncio.gather(*(pool.get(spec).submit(x) for x in inputs[spec.weights]))
            for spec in specs
        }
        done = {key: await result for key, result in results.items()}
        await pool.close_all()
        return done

    results = asyncio.run(main())
    for spec in specs:
        runtime: ModelRuntime = cache.get(spec)
        for x, got in zip(inputs[spec.weights], results[spec.weights], strict=True):
            np.testing.assert_allclose(got, runtime.predict(x), rtol=0, atol=1e-6)


def test_make_executor_caps_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        with make_executor(2, torch_threads=1) as pool:
            assert torch.get_num_threads() == 1
            assert pool.submit(torch.get_num_threads).result() == 1
        with make_executor() as pool:
            assert torch.get_num_threads() >= 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads"):
        make_executor(0)
