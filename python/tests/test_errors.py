"""Bad input raises twotower's exceptions with the command line's messages."""

import numpy as np
import pytest

import twotower


def test_unknown_preset_is_a_value_error(ml100k):
    with pytest.raises(twotower.InvalidInputError, match="preset") as e:
        twotower.train(ml100k, preset="nope", progress=False)
    assert isinstance(e.value, ValueError) and isinstance(e.value, twotower.Error)


def test_bad_split_and_options(ml100k):
    with pytest.raises(ValueError, match="u9"):
        twotower.train(ml100k, preset="tfrs", split="u9", progress=False)
    with pytest.raises(ValueError, match="validation"):
        twotower.train(ml100k, preset="tfrs", validation=1.5, progress=False)
    with pytest.raises(TypeError, match="bogus"):
        twotower.train(ml100k, preset="tfrs", bogus=1)
    with pytest.raises(ValueError, match="dim"):
        twotower.train(ml100k, dim=8, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        twotower.train(ml100k, preset="tfrs", optimizer="sgd", progress=False)


def test_missing_files_are_file_not_found(tmp_path):
    with pytest.raises(twotower.NotFoundError) as e:
        twotower.Model.load(tmp_path / "no-such-model")
    assert isinstance(e.value, FileNotFoundError) and "no-such-model" in str(e.value)
    with pytest.raises(FileNotFoundError):
        twotower.Interactions.from_parquet(tmp_path / "missing.parquet")


def test_refuses_to_overwrite_a_folder_it_did_not_write(tfrs_model, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(twotower.InvalidInputError):
        tfrs_model.save(mine)
    assert (mine / "keep.txt").read_text() == "mine"


def test_bad_frames():
    pd = pytest.importorskip("pandas")
    with pytest.raises(twotower.InvalidInputError, match="no column 'user_id'"):
        twotower.Interactions.from_pandas(pd.DataFrame({"u": [1], "item_id": [2]}))
    with pytest.raises(twotower.InvalidInputError, match="row 1"):
        twotower.Interactions.from_pandas(pd.DataFrame({"user_id": [1, -3], "item_id": [2, 2]}))
    with pytest.raises(twotower.InvalidInputError, match="integers"):
        twotower.Interactions.from_pandas(pd.DataFrame({"user_id": ["a"], "item_id": [2]}))
    items = pd.DataFrame({"item_id": [2], "title": ["Two"]})
    with pytest.raises(twotower.InvalidInputError, match="item 3 is not in the items table"):
        twotower.Interactions.from_pandas(
            pd.DataFrame({"user_id": [1, 1], "item_id": [2, 3]}), items=items
        )


def test_bad_queries(tfrs_model):
    with pytest.raises(ValueError, match="k must be at least 1"):
        tfrs_model.recommend([1], k=0)
    with pytest.raises(ValueError, match="no item with id or title"):
        tfrs_model.similar(["not a movie"])
    index = twotower.Index.build(np.eye(4, dtype=np.float32), kind="exact")
    with pytest.raises(ValueError, match="dimension 3"):
        index.search(np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="real number"):
        index.search(np.ones((2, 4), dtype=np.complex64))
    with pytest.raises(ValueError, match="kind"):
        twotower.Index.build(np.eye(4, dtype=np.float32), kind="hnsw")
