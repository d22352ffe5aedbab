"""TFRS's context-features tutorial (query: user id + timestamp; candidate: title id +
title text; Dense(32) each; batch 2,048, Adagrad 0.1, 3 epochs), its code unchanged but
reading local MovieLens 100K files instead of tensorflow_datasets. A benchmark to compare
`twotower train --preset tfrs-context --split random` with, not a test. Prints one JSON
line: fit seconds, examples/s and test top-100.

    python -m venv venv && venv/bin/pip install tensorflow==2.21.0 \
        tensorflow-recommenders==0.7.7 tf_keras==2.21.0
    venv/bin/python bench/tfrs_context.py ../shared/data/ml-100k [1|0]   # timestamps on/off

The 80/20 split is TF's shuffle with seed 42 (as the tutorial), not twotower's.
"""
import json, os, sys, time
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
t_start = time.time()
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

data = sys.argv[1]
use_ts = sys.argv[2] == "1" if len(sys.argv) > 2 else True
titles = {}
with open(os.path.join(data, "u.item"), encoding="latin-1") as f:
    for line in f:
        p = line.split("|")
        titles[p[0]] = p[1]
users, movies_r, stamps = [], [], []
with open(os.path.join(data, "u.data")) as f:
    for line in f:
        u, i, r, t = line.split()
        users.append(u); movies_r.append(titles[i]); stamps.append(int(t))
ratings = tf.data.Dataset.from_tensor_slices({
    "user_id": np.array(users), "movie_title": np.array(movies_r),
    "timestamp": np.array(stamps, dtype=np.int64)})
movies = tf.data.Dataset.from_tensor_slices(np.array([titles[k] for k in sorted(titles, key=int)]))

timestamps = np.array(stamps)
max_ts, min_ts = timestamps.max(), timestamps.min()
timestamp_buckets = np.linspace(min_ts, max_ts, num=1000)
unique_movie_titles = np.unique(np.array(list(titles.values())))
unique_user_ids = np.unique(np.array(users))

class UserModel(tf.keras.Model):
    def __init__(self, use_timestamps):
        super().__init__()
        self._use_timestamps = use_timestamps
        self.user_embedding = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=unique_user_ids, mask_token=None),
            tf.keras.layers.Embedding(len(unique_user_ids) + 1, 32)])
        if use_timestamps:
            self.timestamp_embedding = tf.keras.Sequential([
                tf.keras.layers.Discretization(timestamp_buckets.tolist()),
                tf.keras.layers.Embedding(len(timestamp_buckets) + 1, 32)])
            self.normalized_timestamp = tf.keras.layers.Normalization(axis=None)
            self.normalized_timestamp.adapt(timestamps)
    def call(self, inputs):
        if not self._use_timestamps:
            return self.user_embedding(inputs["user_id"])
        return tf.concat([
            self.user_embedding(inputs["user_id"]),
            self.timestamp_embedding(inputs["timestamp"]),
            tf.reshape(self.normalized_timestamp(inputs["timestamp"]), (-1, 1))], axis=1)

class MovieModel(tf.keras.Model):
    def __init__(self):
        super().__init__()
        max_tokens = 10_000
        self.title_embedding = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=unique_movie_titles, mask_token=None),
            tf.keras.layers.Embedding(len(unique_movie_titles) + 1, 32)])
        self.title_vectorizer = tf.keras.layers.TextVectorization(max_tokens=max_tokens)
        self.title_text_embedding = tf.keras.Sequential([
            self.title_vectorizer,
            tf.keras.layers.Embedding(max_tokens, 32, mask_zero=True),
            tf.keras.layers.GlobalAveragePooling1D()])
        self.title_vectorizer.adapt(movies)
    def call(self, titles):
        return tf.concat([self.title_embedding(titles), self.title_text_embedding(titles)], axis=1)

class MovielensModel(tfrs.models.Model):
    def __init__(self, use_timestamps):
        super().__init__()
        self.query_model = tf.keras.Sequential([UserModel(use_timestamps), tf.keras.layers.Dense(32)])
        self.candidate_model = tf.keras.Sequential([MovieModel(), tf.keras.layers.Dense(32)])
        self.task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(
            candidates=movies.batch(128).map(self.candidate_model)))
    def compute_loss(self, features, training=False):
        q = self.query_model({"user_id": features["user_id"], "timestamp": features["timestamp"]})
        c = self.candidate_model(features["movie_title"])
        return self.task(q, c, compute_metrics=not training)

tf.random.set_seed(42)
shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
train = shuffled.take(80_000)
test = shuffled.skip(80_000).take(20_000)
cached_train = train.shuffle(100_000).batch(2048)
cached_test = test.batch(4096).cache()
model = MovielensModel(use_ts)
model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
t0 = time.time()
model.fit(cached_train, epochs=3, verbose=0)
fit = time.time() - t0
r = model.evaluate(cached_test, return_dict=True, verbose=0)
print(json.dumps({"timestamps": use_ts, "fit_seconds": fit, "examples_per_second": 240000 / fit,
                  "top100": r["factorized_top_k/top_100_categorical_accuracy"],
                  "process_seconds": time.time() - t_start}))
