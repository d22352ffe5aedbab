"""twotower: a fast, native two-tower retrieval recommender, from Python.

The system of the TensorFlow Recommenders retrieval tutorials — a query tower and a
candidate tower trained with a softmax over candidates, evaluated by ranking the true
item among all items — compiled from Rust: numpy in and out, no TensorFlow.

    import twotower
    data = twotower.load_movielens("ml-100k")
    model = twotower.train(data, preset="tfrs", split="u1")
    model.metrics["factorized_top_k"][100]
    ids, scores = model.recommend([42], k=3)

``Index`` searches any float32 matrix, as ScaNN and FAISS do::

    index = twotower.Index.build(vectors, kind="ann", target_recall=0.95)
    ids, scores = index.search(queries, k=10)

Errors are ``twotower.Error`` subclasses: ``InvalidInputError`` (also a ``ValueError``)
and ``NotFoundError`` (also a ``FileNotFoundError``), carrying the command line's messages.
"""

from __future__ import annotations

import os
import tempfile
from os import PathLike
from typing import Any, Callable, Optional, Sequence, Union

from . import _twotower
from ._errors import Error, InvalidInputError, NotFoundError
from ._twotower import Index, Model, __version__

__all__ = [
    "Error",
    "Index",
    "Interactions",
    "InvalidInputError",
    "Model",
    "NotFoundError",
    "__version__",
    "evaluate",
    "load_movielens",
    "train",
]

_Path = Union[str, "PathLike[str]"]

_SPLIT_OPTIONS = ("test_fraction", "split_seed", "n", "before", "cold_fraction", "history")


class Interactions:
    """Who interacted with what (and when), with the item catalogue.

    Make one with ``load_movielens``, ``Interactions.from_pandas`` or
    ``Interactions.from_file`` (``from_parquet``, ``from_csv``).
    """

    __slots__ = ("_data",)

    def __init__(self, data: "_twotower.Dataset") -> None:
        self._data = data

    @classmethod
    def from_pandas(
        cls,
        df: Any,
        user: str = "user_id",
        item: str = "item_id",
        time: Optional[str] = None,
        items: Any = None,
        item_id: Optional[str] = None,
        title: str = "title",
        genres: Optional[str] = None,
    ) -> "Interactions":
        """Interactions from a pandas DataFrame of integer user and item ids.

        ``time`` names a column of Unix seconds (or datetimes). ``items``, a DataFrame
        with the id column ``item_id`` (default: ``item``), a ``title`` column and
        optionally ``genres`` (lists, or strings joined by ``|``), is the catalogue.
        """
        users = _id_column(df, user)
        item_ids = _id_column(df, item)
        times = None if time is None else _time_column(df, time)
        cat_ids = titles = cat_genres = None
        if items is not None:
            cat_ids = _id_column(items, item_id or item)
            if title in items.columns:
                titles = [str(t) for t in items[title].tolist()]
            if genres is not None:
                cat_genres = [_genre_list(g) for g in _column(items, genres).tolist()]
        data = _twotower.Dataset.arrays(
            users, item_ids, times, cat_ids, titles, cat_genres, name="data frame"
        )
        return cls(data)

    @classmethod
    def from_file(
        cls,
        path: _Path,
        user: Optional[str] = None,
        item: Optional[str] = None,
        time: Optional[str] = None,
        items: Optional[_Path] = None,
        title: Optional[str] = None,
        items_id: Optional[str] = None,
    ) -> "Interactions":
        """Interactions from a log file — CSV, TSV or Parquet, by extension — read natively
        (without pandas or pyarrow), as ``twotower train --interactions`` reads it.

        Columns are found by common names (``user_id``, ``userId``, ``item_id``,
        ``movieId``, ``timestamp``, …) unless named; ``items`` is a catalogue file
        (CSV/TSV with an id and a title column, as ``--items``), its id column ``items_id``
        when the log calls it differently.
        """
        return cls(_twotower.Dataset.log(path, items, user, item, time, title, items_id))

    @classmethod
    def from_parquet(cls, path: _Path, **columns: Any) -> "Interactions":
        """Interactions from a Parquet file: ``from_file`` (same keywords)."""
        return cls.from_file(path, **columns)

    @classmethod
    def from_csv(cls, path: _Path, **columns: Any) -> "Interactions":
        """Interactions from a CSV or TSV file: ``from_file`` (same keywords)."""
        return cls.from_file(path, **columns)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def num_users(self) -> int:
        """Number of distinct users."""
        return self._data.num_users

    @property
    def num_items(self) -> int:
        """Number of items in the catalogue."""
        return self._data.num_items

    @property
    def has_time(self) -> bool:
        """Whether the interactions carry times."""
        return self._data.has_time

    def __repr__(self) -> str:
        return (
            f"<twotower.Interactions {self._data.name}: {len(self)} interactions, "
            f"{self.num_users} users, {self.num_items} items>"
        )


def load_movielens(name: str = "ml-100k", data_dir: Optional[_Path] = None) -> Interactions:
    """A MovieLens dataset (``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``ml-20m``, …).

    Read from ``data_dir`` (the folder holding ``ml-100k/``, or that folder itself), else
    from ``$TWOTOWER_DATA_DIR``, else from the download cache (MovieLens 100K is
    downloaded there on first use).
    """
    return Interactions(_twotower.Dataset.movielens(name, data_dir))


def train(
    interactions: Interactions,
    preset: str = "default",
    split: str = "u1",
    *,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    dim: Optional[int] = None,
    learning_rate: Optional[float] = None,
    lr_decay: Optional[str] = None,
    optimizer: Optional[str] = None,
    negatives: Optional[str] = None,
    temperature: Optional[float] = None,
    l2: Optional[float] = None,
    seed: Optional[int] = None,
    remove_accidental_hits: Optional[bool] = None,
    logq: Optional[bool] = None,
    logq_weight: Optional[float] = None,
    als_iterations: Optional[int] = None,
    als_regularization: Optional[float] = None,
    als_alpha: Optional[float] = None,
    als_reg_exponent: Optional[float] = None,
    als_popularity_exponent: Optional[float] = None,
    als_coarse_dim: Optional[int] = None,
    als_coarse_weight: Optional[float] = None,
    towers: Optional[str] = None,
    user_features: Any = None,
    item_features: Any = None,
    timestamps: bool = True,
    validation: Optional[float] = None,
    eval_sample: Optional[int] = None,
    eval_every_epoch: bool = False,
    max_examples: Optional[int] = None,
    progress: Union[bool, Callable[[dict], None]] = True,
    **split_options: Any,
) -> Model:
    """Train a two-tower model on ``split`` of ``interactions`` and evaluate it.

    The same run as ``twotower train``: ``preset`` is ``default`` (feature towers by what
    the data offers), ``ids``, ``tfrs`` (the TFRS basic retrieval tutorial),
    ``tfrs-context`` or ``tfrs-deep``; ``split`` is ``u1``..``u5``, ``ua``, ``ub``,
    ``random``, ``last``, ``time``, ``cold-items`` or ``cold-users``, with the options
    ``test_fraction``, ``split_seed``, ``n``, ``before``, ``cold_fraction`` and
    ``history``. The keyword overrides are the command line's flags; ``towers`` is a
    TOML tower spec (a path, or the text); ``user_features`` and ``item_features`` are the
    tables its columns come from: DataFrames (the id column ``user_id`` / ``item_id`` or
    ``id``, list values for multi-valued features) or CSV/TSV/Parquet files. Same split and
    seed, same metrics as the command line.

    ``progress``: ``True`` shows a tqdm bar when tqdm is installed; a callable receives
    one dict per event: ``{"event": "epoch_start", "epoch", "epochs", "examples"}``,
    ``{"event": "batch", "epoch", "progress": {"examples_done", "mean_loss", …}}``, and
    ``{"event": "epoch_end", "epoch", "loss", "mean_loss", "seconds", …}``, and around an ALS
    warm start ``{"event": "warm_start", "iterations"}`` and ``{"event": "warm_start_end",
    "seconds"}``. The GIL is released
    while training; Ctrl-C stops it before the next batch (``KeyboardInterrupt``).

    Returns the trained ``Model``, with ``.metrics`` (both protocols and popularity's)
    and ``.history`` (per epoch).
    """
    unknown = sorted(set(split_options) - set(_SPLIT_OPTIONS))
    if unknown:
        raise TypeError(f"train() got unexpected keyword arguments: {', '.join(unknown)}")
    callback, close = _progress(progress)
    tables = tempfile.TemporaryDirectory(prefix="twotower-features-")
    try:
        user_features = _feature_file(user_features, tables.name, "user_features")
        item_features = _feature_file(item_features, tables.name, "item_features")
        return _twotower.train(
            _dataset(interactions),
            preset,
            split,
            split_options,
            epochs,
            batch_size,
            dim,
            learning_rate,
            lr_decay,
            optimizer,
            negatives,
            temperature,
            l2,
            seed,
            remove_accidental_hits,
            logq,
            logq_weight,
            als_iterations,
            als_regularization,
            als_alpha,
            als_reg_exponent,
            als_popularity_exponent,
            als_coarse_dim,
            als_coarse_weight,
            None if towers is None else str(towers),
            user_features,
            item_features,
            timestamps,
            validation,
            eval_sample,
            eval_every_epoch,
            max_examples,
            callback,
        )
    finally:
        close()
        tables.cleanup()


def _feature_file(table: Any, folder: str, name: str) -> Any:
    """A feature table as the path the native reader takes: a path as it is, a DataFrame
    written to ``folder/name.csv`` (lists joined by ``|``; its rows are lines 2, 3, … of
    that file in messages)."""
    if table is None or isinstance(table, (str, PathLike)):
        return table
    if not hasattr(table, "to_csv"):
        raise InvalidInputError(
            f"{name} must be a pandas DataFrame or a file path, got {type(table).__name__}"
        )
    frame = table.copy()
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (list, tuple))).any():
            frame[column] = frame[column].map(
                lambda v: "|".join(map(str, v)) if isinstance(v, (list, tuple)) else v
            )
    path = os.path.join(folder, f"{name}.csv")
    frame.to_csv(path, index=False)
    return path


def evaluate(
    model: Model, interactions: Interactions, split: str = "u1", **split_options: Any
) -> dict:
    """Both protocols of ``model`` on ``split`` of ``interactions`` (its catalogue must be
    the model's): the model's metrics, and popularity's under ``popularity`` — what
    ``twotower eval --json`` prints."""
    unknown = sorted(set(split_options) - set(_SPLIT_OPTIONS))
    if unknown:
        raise TypeError(f"evaluate() got unexpected keyword arguments: {', '.join(unknown)}")
    return _twotower.evaluate(model, _dataset(interactions), split, split_options)


def _dataset(interactions: Interactions) -> "_twotower.Dataset":
    if not isinstance(interactions, Interactions):
        raise InvalidInputError(
            "expected twotower.Interactions (from load_movielens or Interactions.from_pandas), "
            f"got {type(interactions).__name__}"
        )
    return interactions._data


def _progress(progress: Union[bool, Callable[[dict], None]]):
    """The callback for ``train``'s ``progress``, and how to close what it opened."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    state: dict = {"bar": None}

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None

    def on_event(event: dict) -> None:
        kind = event["event"]
        if kind == "epoch_start":
            close()
            state["bar"] = tqdm(
                total=event["examples"],
                desc=f"epoch {event['epoch']}/{event['epochs']}",
                unit="ex",
                leave=False,
            )
        elif kind == "batch" and state["bar"] is not None:
            bar, done = state["bar"], event["progress"]
            bar.update(done["examples_done"] - bar.n)
            bar.set_postfix(loss=f"{done['mean_loss']:.4f}", refresh=False)
        elif kind == "epoch_end":
            if state["bar"] is not None:
                state["bar"].write(
                    f"epoch {event['epoch']}: mean loss {event['mean_loss']:.4f}, "
                    f"{event['seconds']:.2f} s"
                )
            close()

    return on_event, close


def _column(df: Any, name: str) -> Any:
    if name not in df.columns:
        raise InvalidInputError(
            f"no column {name!r}; the columns are: {', '.join(map(str, df.columns))}"
        )
    return df[name]


def _id_column(df: Any, name: str):
    import numpy as np

    values = _column(df, name).to_numpy()
    if values.dtype.kind not in "iu":
        try:
            as_int = values.astype(np.int64)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"column {name!r}: ids must be integers (got dtype {values.dtype})"
            ) from None
        if values.dtype.kind == "f" and not np.array_equal(as_int, values):
            bad = int(np.flatnonzero(as_int != values)[0])
            raise InvalidInputError(f"column {name!r}: row {bad}: {values[bad]!r} is not an integer id")
        values = as_int
    if values.dtype.kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:
        raise InvalidInputError(f"column {name!r}: ids must be below 2^32")
    return np.ascontiguousarray(values, dtype=np.int64)


def _time_column(df: Any, name: str):
    import numpy as np

    values = _column(df, name).to_numpy()
    if values.dtype.kind == "M":
        return np.ascontiguousarray(values.astype("datetime64[s]").astype(np.int64))
    if values.dtype.kind not in "iuf":
        raise InvalidInputError(
            f"column {name!r}: times must be Unix seconds or datetimes (got dtype {values.dtype})"
        )
    return np.ascontiguousarray(values, dtype=np.int64)


def _genre_list(value: Any) -> list:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        return [g for g in value.split("|") if g]
    return [str(g) for g in value]
