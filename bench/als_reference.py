"""implicit's ALS the way issue 17 and ANCHORS.md time it: a whole process that starts the
interpreter, loads the training side, fits, and scores the test side by Protocol 1
(factorized top-K over the whole catalogue, ties in the model's favour, training items
not excluded; EVALUATION.md), so `twotower bench quality` can run both alternately.

    python -m venv /tmp/als && /tmp/als/bin/pip install implicit==0.7.3 numpy scipy
    /tmp/als/bin/python bench/als_reference.py --data-dir ../shared/data          # ML-100K u1
    /tmp/als/bin/python bench/als_reference.py --data-dir ../shared/data --dataset lastfm \\
        --factors 32 --regularization 50 --alpha 20 --iterations 15
    /tmp/als/bin/python bench/als_reference.py --dataset movielens-csv --data-dir SYNTH_DIR

Prints one JSON object: the settings, fit seconds and factorized_top_k {1,5,10,50,100}.
With --validation F, ALS is fitted on a seeded 1-F of the training side and scored on the
rest (for tuning it honestly, never on the test side). Last.fm and MovieLens CSV folders are
split at random (--split-seed); --split-out DIR writes that split so twotower scores the same
rows (`twotower train --interactions … --items … --train DIR/train.tsv --test DIR/test.tsv`).
"""

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402


def ml100k(root, fold):
    def read(name):
        a = np.loadtxt(os.path.join(root, "ml-100k", name), dtype=np.int64, usecols=(0, 1))
        return a[:, 0], a[:, 1]

    return read(f"{fold}.base"), read(f"{fold}.test"), 1682


def lastfm(root, seed, split_out=None, test_fraction=0.2):
    """Last.fm 2k user–artist pairs, a seeded random 80/20 split; items are the 17,632
    artists of artists.dat."""
    d = os.path.join(root, "lastfm-2k")
    pairs = np.loadtxt(os.path.join(d, "user_artists.dat"), dtype=np.int64, skiprows=1, usecols=(0, 1))
    artists = np.loadtxt(
        os.path.join(d, "artists.dat"), dtype=np.int64, skiprows=1, usecols=0, delimiter="\t",
        comments=None, encoding="utf-8",
    )
    return random_split(pairs, artists, seed, test_fraction, split_out)


def movielens_csv(folder, seed, split_out=None, test_fraction=0.2):
    """A MovieLens CSV folder (ratings.csv, movies.csv; `twotower data synth` writes one),
    a seeded random 80/20 split; items are the rows of movies.csv."""
    pairs = np.loadtxt(os.path.join(folder, "ratings.csv"), dtype=np.int64, skiprows=1,
                       usecols=(0, 1), delimiter=",")
    movies = np.loadtxt(os.path.join(folder, "movies.csv"), dtype=np.int64, skiprows=1,
                        usecols=0, delimiter=",", comments=None)
    return random_split(pairs, movies, seed, test_fraction, split_out)


def random_split(pairs, item_ids, seed, test_fraction, split_out=None):
    """(user, item) `pairs` shuffled with `seed` and cut into training and test sides; items
    renumbered 1..n in the order of the sorted catalogue `item_ids`. With `split_out`, both
    sides are also written there with their own ids (train.tsv, test.tsv: user, item, 1, 0,
    tab-separated), for `twotower train --train DIR/train.tsv --test DIR/test.tsv`."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    cut = int(round(len(pairs) * (1 - test_fraction)))
    train, test = pairs[order[:cut]], pairs[order[cut:]]
    if split_out:
        os.makedirs(split_out, exist_ok=True)
        for name, side in (("train.tsv", train), ("test.tsv", test)):
            rows = np.column_stack([side, np.ones(len(side), np.int64), np.zeros(len(side), np.int64)])
            np.savetxt(os.path.join(split_out, name), rows, fmt="%d", delimiter="\t")
    ids = {a: i + 1 for i, a in enumerate(np.sort(item_ids))}
    remap = np.vectorize(ids.get)
    return (train[:, 0], remap(train[:, 1])), (test[:, 0], remap(test[:, 1])), len(ids)


def factorized_top_k(user_f, item_f, users, items, ks=(1, 5, 10, 50, 100)):
    scores = user_f[users] @ item_f.T
    true = scores[np.arange(len(users)), items]
    rank = (scores > true[:, None]).sum(axis=1)
    return {k: float(np.mean(rank < k)) for k in ks}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TWOTOWER_DATA_DIR", "../shared/data"))
    p.add_argument("--dataset", choices=["ml-100k", "lastfm", "movielens-csv"], default="ml-100k")
    p.add_argument("--fold", default="u1")
    p.add_argument("--factors", type=int, default=16)
    p.add_argument("--regularization", type=float, default=100.0)
    p.add_argument("--alpha", type=float, default=30.0)
    p.add_argument("--iterations", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--validation", type=float, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--split-seed", type=int, default=42,
                   help="the random 80/20 split's seed (Last.fm, MovieLens CSV); a different "
                        "generator than twotower's --split-seed: use --split-out to score "
                        "both on the same rows")
    p.add_argument("--split-out", metavar="DIR",
                   help="also write the random split to DIR/train.tsv and DIR/test.tsv "
                        "(u.data layout, the dataset's own ids) for twotower's --train/--test")
    a = p.parse_args()

    from implicit.als import AlternatingLeastSquares

    if a.dataset == "ml-100k":
        (tu, ti), (su, si), n_items = ml100k(a.data_dir, a.fold)
    elif a.dataset == "lastfm":
        (tu, ti), (su, si), n_items = lastfm(a.data_dir, a.split_seed, a.split_out)
    else:  # --data-dir is the folder itself, as twotower's --dataset movielens-csv takes it
        (tu, ti), (su, si), n_items = movielens_csv(a.data_dir, a.split_seed, a.split_out)
    if a.validation:
        order = np.random.default_rng(a.seed).permutation(len(tu))
        cut = int(round(len(tu) * (1 - a.validation)))
        (tu, ti), (su, si) = (tu[order[:cut]], ti[order[:cut]]), (tu[order[cut:]], ti[order[cut:]])
    n_users = int(max(tu.max(), su.max())) + 1
    # Implicit feedback: one per pair (duplicates summed), confidence 1 + alpha.
    m = sp.csr_matrix((np.ones(len(tu), np.float32), (tu, ti)), shape=(n_users, n_items + 1))
    m.sum_duplicates()
    m.data[:] = 1.0
    start = time.perf_counter()
    model = AlternatingLeastSquares(
        factors=a.factors, regularization=a.regularization, alpha=a.alpha,
        iterations=a.iterations, num_threads=a.threads, random_state=a.seed,
    )
    model.fit(m, show_progress=False)
    fit = time.perf_counter() - start
    user_f, item_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
    # Rows 1..n_items are the catalogue (row 0 is unused).
    top = factorized_top_k(user_f, item_f[1:], su, si - 1)
    print(json.dumps({"dataset": a.dataset, "fold": a.fold, "factors": a.factors,
                      "regularization": a.regularization, "alpha": a.alpha,
                      "iterations": a.iterations, "fit_seconds": fit,
                      "factorized_top_k": top}))


if __name__ == "__main__":
    main()
