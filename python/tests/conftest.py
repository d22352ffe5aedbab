"""Shared fixtures: MovieLens 100K (from $TWOTOWER_DATA_DIR, as the Rust tests read it) and
the command-line binary the metrics are compared with."""

import json
import os
import subprocess
from pathlib import Path

import pytest

import twotower

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    d = os.environ.get("TWOTOWER_DATA_DIR")
    root = Path(d) if d else REPO.parent / "shared" / "data"
    if not (root / "ml-100k" / "u.data").exists():
        pytest.fail(
            f"MovieLens 100K not found under {root}: set TWOTOWER_DATA_DIR to the folder "
            "holding ml-100k/"
        )
    return root


@pytest.fixture(scope="session")
def ml100k() -> twotower.Interactions:
    return twotower.load_movielens("ml-100k", data_dir())


@pytest.fixture(scope="session")
def tfrs_model(ml100k) -> twotower.Model:
    return twotower.train(ml100k, preset="tfrs", split="u1", progress=False)


def cli() -> Path:
    """The twotower binary: $TWOTOWER_BIN, else the workspace's build."""
    given = os.environ.get("TWOTOWER_BIN")
    candidates = [Path(given)] if given else [
        REPO / "target" / "release" / "twotower",
        REPO / "target" / "debug" / "twotower",
    ]
    for c in candidates:
        if c.exists():
            return c
    pytest.fail("the twotower binary is not built: run `cargo build` (or set TWOTOWER_BIN)")


def cli_json(*args: str) -> dict:
    """`twotower ARGS --json` on MovieLens 100K, parsed."""
    env = dict(os.environ, TWOTOWER_DATA_DIR=str(data_dir()))
    out = subprocess.run(
        [str(cli()), *args, "--json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def same_metrics(python: dict, cli: dict) -> None:
    """The model's metrics of both protocols, equal to the last digit."""
    for key in ("factorized_top_k", "factorized_top_k_ties_against", "recall", "ndcg"):
        assert {int(k): v for k, v in cli[key].items()} == python[key], key
    assert cli["test_interactions"] == python["test_interactions"]
