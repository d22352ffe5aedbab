"""Hostile and careless input: arrays in every layout and dtype give numpy's answer or
InvalidInputError, never a misread; sizes a caller chooses never reach an allocation; nothing
kills the interpreter."""

import warnings

import numpy as np
import pytest

import twotower


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(3)
    return rng.standard_normal((500, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def exact(vectors):
    return twotower.Index.build(vectors, kind="exact")


def numpy_top(vectors, queries, k):
    scores = np.asarray(queries, dtype=np.float64) @ vectors.T.astype(np.float64)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def layouts(x):
    """The same matrix in every memory layout numpy and pandas hand out."""
    pd = pytest.importorskip("pandas")
    yield "C", np.ascontiguousarray(x)
    yield "Fortran", np.asfortranarray(x)
    yield "transposed twice", np.ascontiguousarray(x.T).T
    yield "strided rows", np.repeat(x, 2, axis=0)[::2]
    yield "strided columns", np.repeat(x, 2, axis=1)[:, ::2]
    yield "DataFrame.to_numpy", pd.DataFrame(x).to_numpy()
    yield "list of lists", x.tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8])
def test_queries_in_every_layout_and_dtype_give_numpys_answer(vectors, exact, dtype):
    queries = (vectors[:7] * 3).astype(dtype)
    want = numpy_top(vectors, np.asarray(queries, dtype=np.float32), 5)
    for name, q in layouts(np.asarray(queries)):
        ids, _ = exact.search(q, k=5)
        np.testing.assert_array_equal(ids, want, err_msg=f"{name} {np.dtype(dtype)}")


def test_index_build_reads_every_layout_the_same(vectors):
    queries = vectors[:5] + 0.01
    want = numpy_top(vectors, queries, 5)
    for name, v in layouts(vectors):
        for kind in ("exact", "ann"):
            extra = {} if kind == "exact" else {"leaves": 4, "leaves_to_search": 4, "reorder": 500}
            index = twotower.Index.build(v, kind=kind, **extra)
            ids, _ = index.search(queries, k=5)
            np.testing.assert_array_equal(ids, want, err_msg=f"{name} {kind}")
    # tune_queries in Fortran order are read as the same rows.
    tuned = twotower.Index.build(vectors, tune_queries=np.asfortranarray(vectors[:50]))
    assert tuned.kind == "ann"


@pytest.mark.parametrize(
    "bad",
    [
        np.array([["a"] * 12]),
        np.ones((2, 12), dtype=np.complex64),
        np.array([[object()] * 12], dtype=object),
        np.ones((2, 3, 12), dtype=np.float32),
        np.full((1, 12), np.nan, dtype=np.float32),
        np.full((1, 12), np.inf, dtype=np.float64),
        np.full((1, 12), 1e300, dtype=np.float64),
        "not an array",
    ],
)
def test_bad_queries_are_invalid_input(exact, bad):
    with pytest.raises(twotower.InvalidInputError):
        exact.search(bad, k=3)


def test_bad_vectors_are_invalid_input():
    for bad in (np.ones((4, 3), dtype=np.complex128), np.array([[np.nan, 1.0]]), np.ones(5)):
        with pytest.raises(twotower.InvalidInputError):
            twotower.Index.build(bad, kind="exact")


def test_a_huge_k_is_capped_at_the_index_and_the_catalogue(vectors, exact, tfrs_model):
    ids, scores = exact.search(vectors[:2], k=10**12)
    assert ids.shape == (2, 500) and scores.shape == (2, 500)
    ids, _ = exact.search(vectors[0], k=10**12)
    assert ids.shape == (500,)
    ann = twotower.Index.build(vectors, leaves=4, leaves_to_search=4, reorder=50)
    ids, _ = ann.search(vectors[:2], k=10**12)
    assert ids.shape == (2, 500)
    items = len(tfrs_model.item_ids())
    ids, _ = tfrs_model.recommend([1, 2], k=10**12)
    assert ids.shape == (2, items)
    ids, _ = tfrs_model.similar([1], k=10**12)
    assert ids.shape == (1, items)


def test_an_all_zero_ann_index_answers_like_the_exact_one():
    zeros = np.zeros((300, 8), dtype=np.float32)
    ann = twotower.Index.build(zeros, leaves=4, leaves_to_search=4, reorder=100)
    exact = twotower.Index.build(zeros, kind="exact")
    q = np.ones((1, 8), dtype=np.float32)
    a, _ = ann.search(q, k=5)
    e, _ = exact.search(q, k=5)
    assert (a >= 0).all() and (e >= 0).all()


def test_an_unknown_user_is_flagged(tfrs_model):
    with pytest.warns(UserWarning, match="not in the model"):
        tfrs_model.recommend([1, 99999999], k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tfrs_model.recommend([1, 2], k=3)


def test_a_diverging_learning_rate_is_an_error(ml100k):
    with pytest.raises(twotower.Error, match="diverged"):
        twotower.train(ml100k, preset="tfrs", split="u1", epochs=1, learning_rate=1e6, progress=False)


def test_a_huge_dim_is_refused_before_allocating(ml100k):
    with pytest.raises(twotower.InvalidInputError, match="dimension"):
        twotower.train(ml100k, preset="tfrs", split="u1", epochs=1, dim=10**6, progress=False)
