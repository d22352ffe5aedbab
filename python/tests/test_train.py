"""Training, answering, saving and loading from Python, against the command line."""

import _thread

import numpy as np
import pytest

import twotower
from conftest import cli_json, same_metrics


def test_tfrs_metrics_equal_the_command_lines(tfrs_model):
    cli = cli_json("train", "--preset", "tfrs", "--split", "u1", "--show-user", "")
    same_metrics(tfrs_model.metrics, cli)
    same_metrics(tfrs_model.metrics["popularity"], cli["popularity"])
    assert tfrs_model.report["factorized_top_k"] == cli["factorized_top_k"]
    assert [h["epoch"] for h in tfrs_model.history] == [1, 2, 3]


def test_feature_model_metrics_equal_the_command_lines(ml100k):
    model = twotower.train(ml100k, split="u2", epochs=2, seed=7, progress=False)
    assert model.kind == "features"
    cli = cli_json(
        "train", "--split", "u2", "--epochs", "2", "--seed", "7", "--show-user", ""
    )
    same_metrics(model.metrics, cli)


def test_als_warm_start_equals_the_command_lines(ml100k):
    events = []
    model = twotower.train(
        ml100k, preset="ids", split="u1", epochs=0, dim=16, als_iterations=5,
        als_regularization=0.03, als_alpha=60, als_reg_exponent=1,
        als_popularity_exponent=0.15, als_coarse_dim=4, progress=events.append,
    )
    assert [e["event"] for e in events] == ["warm_start", "warm_start_end"]
    assert model.history == []
    cli = cli_json(
        "train", "--preset", "ids", "--split", "u1", "--epochs", "0", "--dim", "16",
        "--als-iterations", "5", "--als-regularization", "0.03", "--als-alpha", "60",
        "--als-reg-exponent", "1", "--als-popularity-exponent", "0.15", "--als-coarse-dim", "4",
        "--show-user", "",
    )
    assert cli["config"]["warm_start"]["popularity_exponent"] == pytest.approx(0.15)
    # The coarse part's weight, open, was chosen on held-out pairs; the tables grew by it.
    assert cli["config"]["warm_start"]["coarse"]["weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert cli["config"]["embedding_dim"] == 20 and model.dim == 20
    same_metrics(model.metrics, cli)
    top100 = model.metrics["factorized_top_k"][100]
    assert top100 > model.metrics["popularity"]["factorized_top_k"][100] + 0.05


def test_recommend_shapes_dtypes_and_agreement_with_the_embeddings(tfrs_model):
    ids, scores = tfrs_model.recommend([42, 1, 7], k=5)
    assert ids.shape == (3, 5) and ids.dtype == np.int64
    assert scores.shape == (3, 5) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    users = tfrs_model.user_embeddings()
    items = tfrs_model.item_embeddings()
    assert users.dtype == np.float32 and items.shape == (1682, tfrs_model.dim)
    row = list(tfrs_model.user_ids()).index(42)
    by_hand = items @ users[row]
    best = tfrs_model.item_ids()[np.argsort(-by_hand)[:5]]
    assert list(best) == list(ids[0])
    np.testing.assert_allclose(np.sort(by_hand)[::-1][:5], scores[0], rtol=1e-5)


def test_exclude_seen_leaves_out_training_items(ml100k, tfrs_model):
    seen = set()
    with open(ml100k_path("u1.base")) as f:
        for line in f:
            u, i = line.split("\t")[:2]
            if u == "42":
                seen.add(int(i))
    ids, _ = tfrs_model.recommend([42], k=50, exclude_seen=True)
    assert not seen & set(ids[0])
    plain, _ = tfrs_model.recommend([42], k=50)
    assert seen & set(plain[0])


def ml100k_path(name):
    from conftest import data_dir

    return data_dir() / "ml-100k" / name


def test_save_load_round_trip(tfrs_model, tmp_path):
    out = tmp_path / "model"
    tfrs_model.save(out)
    loaded = twotower.Model.load(out)
    a = tfrs_model.recommend([42, 500], k=10)
    b = loaded.recommend([42, 500], k=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert loaded.metrics["factorized_top_k"] == tfrs_model.metrics["factorized_top_k"]
    assert loaded.report is None and len(loaded.history) == 3
    # The command line reads the folder Python wrote.
    rec = cli_json("recommend", "--model", str(out), "--user", "42", "-k", "10")
    assert [int(r["id"]) for r in rec["items"]] == list(a[0][0])


def test_evaluate_gives_the_training_metrics(ml100k, tfrs_model):
    again = twotower.evaluate(tfrs_model, ml100k, "u1")
    assert again["factorized_top_k"] == tfrs_model.metrics["factorized_top_k"]
    assert again["popularity"] == tfrs_model.metrics["popularity"]


def test_similar_items(tfrs_model):
    ids, scores = tfrs_model.similar([50, "Star Wars (1977)"], k=4)
    assert ids.shape == (2, 4)
    assert 50 not in ids[0]
    np.testing.assert_array_equal(ids[0], ids[1])
    assert np.all(scores <= 1.0 + 1e-5)


def test_progress_events_and_a_callback_error_stops_training(ml100k):
    events = []
    twotower.train(ml100k, preset="tfrs", split="u1", progress=events.append)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "epoch_start" and kinds.count("epoch_end") == 3 and "batch" in kinds

    def boom(event):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        twotower.train(ml100k, preset="tfrs", split="u1", progress=boom)


def test_ctrl_c_interrupts_training(ml100k):
    ended = []

    def interrupt(event):
        if event["event"] == "epoch_end":
            ended.append(event)
            _thread.interrupt_main()  # as Ctrl-C does

    with pytest.raises(KeyboardInterrupt):
        twotower.train(ml100k, preset="tfrs", split="u1", epochs=200, progress=interrupt)
    assert 1 <= len(ended) < 10


def ratings_frame(pd, max_user):
    """ML-100K's ratings of users 1..max_user as a DataFrame."""
    df = pd.read_csv(
        ml100k_path("u.data"), sep="\t", names=["user_id", "item_id", "rating", "timestamp"]
    )
    return df[df.user_id <= max_user]


def test_from_parquet_equals_from_pandas(ml100k, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = ratings_frame(pd, max_user=200)
    path = tmp_path / "log.parquet"
    df.to_parquet(path, index=False)
    frame = twotower.Interactions.from_pandas(df, time="timestamp")
    from_file = twotower.Interactions.from_parquet(path)
    assert len(from_file) == len(df) and from_file.has_time
    a = twotower.train(frame, preset="ids", split="last", epochs=2, progress=False)
    b = twotower.train(from_file, preset="ids", split="last", epochs=2, progress=False)
    assert a.metrics == b.metrics


def test_from_pandas_equals_reading_the_same_file(ml100k, tmp_path):
    pd = pytest.importorskip("pandas")
    df = ratings_frame(pd, max_user=300)
    csv = tmp_path / "log.csv"
    df.to_csv(csv, index=False)
    frame = twotower.Interactions.from_pandas(df, time="timestamp")
    assert len(frame) == len(df) and frame.has_time
    from_file = twotower.Interactions.from_csv(csv)
    a = twotower.train(frame, preset="ids", split="random", epochs=3, progress=False)
    b = twotower.train(from_file, preset="ids", split="random", epochs=3, progress=False)
    assert a.metrics == b.metrics
    cli = cli_json(
        "train", "--interactions", str(csv), "--preset", "ids", "--split", "random",
        "--epochs", "3", "--show-user", "",
    )
    same_metrics(a.metrics, cli)


SPEC = """
[user_columns]
region = "categorical"
[item_columns]
shelf = "multi"
[query]
features = [
  { kind = "id", column = "user_id", dim = 8 },
  { kind = "categorical", column = "region", dim = 4 },
]
[candidate]
features = [
  { kind = "id", column = "item_id", dim = 8 },
  { kind = "multi", column = "shelf", dim = 4 },
]
"""


def test_feature_tables_as_data_frames_equal_the_same_files(tmp_path):
    pd = pytest.importorskip("pandas")
    df = ratings_frame(pd, max_user=200)
    log = twotower.Interactions.from_pandas(df, time="timestamp")
    users = pd.DataFrame({"user_id": range(1, 201)})
    users["region"] = ["R%d" % (u % 3) for u in users.user_id]
    items = pd.DataFrame({"item_id": range(1, 1683)})
    items["shelf"] = [["S%d" % (i % 4), "T%d" % (i % 7)] for i in items.item_id]
    users.to_csv(tmp_path / "users.csv", index=False)
    items.assign(shelf=items.shelf.map("|".join)).to_csv(tmp_path / "items.csv", index=False)
    common = dict(towers=SPEC, split="random", epochs=2, progress=False)
    frames = twotower.train(log, user_features=users, item_features=items, **common)
    files = twotower.train(
        log, user_features=tmp_path / "users.csv", item_features=tmp_path / "items.csv", **common
    )
    assert frames.kind == "features"
    assert frames.metrics == files.metrics
    np.testing.assert_array_equal(frames.item_embeddings(), files.item_embeddings())
