"""The index on any float32 matrix, against exact search done with numpy."""

import _thread
import threading

import numpy as np
import pytest

import twotower


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2000, 16)).astype(np.float32)


def exact_top(vectors, queries, k):
    scores = queries @ vectors.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k], -np.sort(-scores, axis=1)[:, :k]


def test_exact_index_equals_numpy(vectors):
    queries = vectors[:20] + 0.1
    index = twotower.Index.build(vectors, kind="exact")
    ids, scores = index.search(queries, k=10)
    want_ids, want_scores = exact_top(vectors, queries, 10)
    assert ids.shape == (20, 10) and ids.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    one_ids, one_scores = index.search(queries[0], k=10)
    assert one_ids.shape == (10,)
    np.testing.assert_array_equal(one_ids, ids[0])


def test_ann_searching_everything_is_exact_and_round_trips(vectors, tmp_path):
    queries = vectors[100:150] * 0.5
    full = twotower.Index.build(vectors, leaves=8, leaves_to_search=8, reorder=2000)
    assert full.kind == "ann" and len(full) == 2000 and full.dim == 16
    ids, _ = full.search(queries, k=10)
    np.testing.assert_array_equal(ids, exact_top(vectors, queries, 10)[0])
    full.save(tmp_path / "index")
    again = twotower.Index.load(tmp_path / "index")
    np.testing.assert_array_equal(again.search(queries, k=10)[0], ids)


def test_tuned_ann_reaches_its_recall(vectors):
    index = twotower.Index.build(vectors, target_recall=0.9)
    queries = vectors[:200] + 0.05
    ids, _ = index.search(queries, k=10)
    truth = exact_top(vectors, queries, 10)[0]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])
    assert recall >= 0.85, recall


def test_k_beyond_the_rows_is_capped(vectors):
    index = twotower.Index.build(vectors[:3], kind="exact")
    ids, scores = index.search(vectors[0], k=5)
    assert sorted(ids) == [0, 1, 2] and np.all(np.isfinite(scores))


def test_ctrl_c_interrupts_an_index_build():
    # Large enough that the build (seconds) is still running when Ctrl-C comes.
    big = np.random.default_rng(1).standard_normal((300_000, 32)).astype(np.float32)
    timer = threading.Timer(0.3, _thread.interrupt_main)  # as Ctrl-C does
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            twotower.Index.build(big, kind="ann")
    finally:
        timer.cancel()
