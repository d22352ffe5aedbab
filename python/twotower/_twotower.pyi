"""Type stubs of the native module (the classes `twotower` re-exports)."""

from os import PathLike
from typing import Any, Callable, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike[str]]
_Ids = Union[int, str, Sequence[Union[int, str]], npt.NDArray[np.integer]]

__version__: str

class Dataset:
    @staticmethod
    def movielens(name: str = "ml-100k", data_dir: Optional[_Path] = None) -> Dataset: ...
    @staticmethod
    def log(
        path: _Path,
        items: Optional[_Path] = None,
        user: Optional[str] = None,
        item: Optional[str] = None,
        time: Optional[str] = None,
        title: Optional[str] = None,
        items_id: Optional[str] = None,
    ) -> Dataset: ...
    @staticmethod
    def arrays(
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        times: Optional[npt.NDArray[np.int64]] = None,
        item_ids: Optional[npt.NDArray[np.int64]] = None,
        titles: Optional[Sequence[str]] = None,
        genres: Optional[Sequence[Sequence[str]]] = None,
        name: str = "data frame",
    ) -> Dataset: ...
    def __len__(self) -> int: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def has_time(self) -> bool: ...
    @property
    def name(self) -> str: ...

class Model:
    """A trained two-tower model."""

    @staticmethod
    def load(path: _Path) -> Model:
        """Loads a model folder written by `twotower train --out` or `Model.save`."""
    def save(self, path: _Path) -> None:
        """Writes the model folder (only ever replacing a model folder, atomically)."""
    def recommend(
        self, users: _Ids, k: int = 10, exclude_seen: bool = False
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k item ids and scores per user, shape (len(users), k); -1 pads."""
    def similar(
        self, items: _Ids, k: int = 10
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The k items closest by cosine to each item (id or exact title)."""
    def user_embeddings(self) -> npt.NDArray[np.float32]:
        """Query vectors of the known users, shape (users, dim), in user_ids() order."""
    def item_embeddings(self) -> npt.NDArray[np.float32]:
        """Candidate vectors of the catalogue, shape (items, dim), in item_ids() order."""
    def user_ids(self) -> npt.NDArray[np.int64]: ...
    def item_ids(self) -> npt.NDArray[np.int64]: ...
    def item_titles(self) -> list[str]: ...
    @property
    def metrics(self) -> Optional[dict[str, Any]]:
        """Both protocols' test metrics ({k: value} maps) and popularity's."""
    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per epoch."""
    @property
    def report(self) -> Optional[dict[str, Any]]:
        """The training report as `twotower train --json` prints it."""
    @property
    def dim(self) -> int: ...
    @property
    def kind(self) -> str:
        """"ids" (format 1) or "features" (format 2)."""

class Index:
    """Maximum-inner-product search over a float32 matrix: exact or ScaNN-style ANN."""

    @staticmethod
    def build(
        vectors: npt.ArrayLike,
        kind: str = "ann",
        target_recall: float = 0.95,
        tune_queries: Optional[npt.ArrayLike] = None,
        leaves: Optional[int] = None,
        leaves_to_search: Optional[int] = None,
        reorder: Optional[int] = None,
        subspaces: Optional[int] = None,
        anisotropic: float = 0.2,
        kmeans_init: str = "random",
        seed: int = 0,
    ) -> Index: ...
    @staticmethod
    def load(path: _Path) -> Index: ...
    def save(self, path: _Path) -> None: ...
    def search(
        self, queries: npt.ArrayLike, k: int = 10
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Row ids and scores, best first: shape (k,) for one query, (n, k) for a batch,
        k capped at the index's rows; queries converted to C-ordered float32."""
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def search_setting(self) -> Optional[Tuple[int, int]]: ...

def train(*args: Any, **kwargs: Any) -> Model: ...
def evaluate(
    model: Model, data: Dataset, split: str = "u1", split_options: Optional[dict] = None
) -> dict[str, Any]: ...
