"""The native BPR trainer: its sampler and SGD kernel against plain-Python references, and how BPRMF uses it."""

from __future__ import annotations

import bisect

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.models import BPRMF, HybridMF, TrainConfig
from mmrec_fast.models import _bpr_kernels as K
from mmrec_fast.models.config import TRAINER_DEFAULTS
from mmrec_fast.models.training import resolve_trainer

QUICK = dict(dim=8, epochs=5, lr=0.05, reg=0.01, progress=False)


def csr_parts(matrix):
    """What the trainer hands the kernel: int64 indptr, int32 sorted indices, each entry's user."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    indptr = matrix.indptr.astype(np.int64)
    return (
        indptr,
        matrix.indices.astype(np.int32),
        np.repeat(np.arange(matrix.shape[0], dtype=np.int32), np.diff(indptr)),
    )


def reference_triples(indptr, indices, user_of, n_items, n_samples, seed, max_tries):
    """The sampling rule written out in plain Python (bisect for the row search, int arithmetic): one
    main-stream draw per triple (high half: entry, low half: first negative), redraws from the retry stream."""
    out, state, nnz = [], int(seed), len(indices)
    _, retry = K.splitmix64(int(seed) ^ 0xD1B54A32D192ED03)
    for _ in range(n_samples):
        state, bits = K.splitmix64(state)
        entry = ((bits >> 32) * nnz) >> 32
        user, pos = int(user_of[entry]), int(indices[entry])
        row = list(indices[indptr[user] : indptr[user + 1]])
        low, neg = bits & 0xFFFFFFFF, -1
        for attempt in range(max_tries):
            if attempt:
                retry, more = K.splitmix64(retry)
                low = more & 0xFFFFFFFF
            candidate = (low * n_items) >> 32
            at = bisect.bisect_left(row, candidate)
            if not (at < len(row) and row[at] == candidate):
                neg = candidate
                break
        out.append((user, pos, neg))
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def reference_epoch(users, items, bias, triples, lr, reg):
    """Rendle's SGD step per triple in float64 (the kernel runs float32 with reassociated sums)."""
    users, items, bias = users.astype(np.float64), items.astype(np.float64), bias.astype(np.float64)
    loss = 0.0
    for u, i, j in triples:
        if j < 0:
            continue
        x = bias[i] - bias[j] + users[u] @ (items[i] - items[j])
        z = 1.0 / (1.0 + np.exp(x)) if x < 0 else np.exp(-x) / (1.0 + np.exp(-x))
        loss += np.logaddexp(0.0, -x)
        p, qi, qj = users[u].copy(), items[i].copy(), items[j].copy()
        users[u] = p + lr * (z * (qi - qj) - reg * p)
        items[i] = qi + lr * (z * p - reg * qi)
        items[j] = qj + lr * (-z * p - reg * qj)
        bi, bj = bias[i], bias[j]
        bias[i] = bi + lr * (z - reg * bi)
        bias[j] = bj + lr * (-z - reg * bj)
    return users, items, bias, loss


def adversarial_matrix(rng, n_users=40, n_items=30):
    """Random rows plus the edges: a full row (always skipped), a row missing one item, empty rows,
    a single-item row, items nobody has."""
    dense = rng.random((n_users, n_items)) < 0.2
    dense[:, -3:] = False  # never positive: only ever negatives
    dense[0] = True  # every item: every negative draw hits, the triple is skipped
    dense[1] = True
    dense[1, 7] = False  # exactly one possible negative
    dense[2] = False  # no positives: never drawn
    dense[3] = False
    dense[3, 5] = True
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.fixture(params=["random", "adversarial"])
def matrix(request, rng):
    if request.param == "random":
        return sp.random(25, 40, density=0.15, format="csr", random_state=rng, dtype=np.float32)
    return adversarial_matrix(rng)


def test_sampler_follows_the_reference_rule(matrix):
    indptr, indices, user_of = csr_parts(matrix)
    for seed in (0, 12345, 2**64 - 1):
        got = np.stack(
            K.sample_triples(indptr, indices, user_of, matrix.shape[1], 3000, np.uint64(seed), K.MAX_TRIES), axis=1
        )
        want = reference_triples(indptr, indices, user_of, matrix.shape[1], 3000, seed, K.MAX_TRIES)
        np.testing.assert_array_equal(got, want)


def test_sampler_is_uniform_over_positives_and_allowed_negatives(rng):
    matrix = adversarial_matrix(rng)
    indptr, indices, user_of = csr_parts(matrix)
    n = 200_000
    users, pos, neg = K.sample_triples(indptr, indices, user_of, matrix.shape[1], n, np.uint64(7), K.MAX_TRIES)
    dense = matrix.toarray() > 0
    assert dense[users, pos].all()  # a drawn positive is a stored entry of its user
    kept = neg >= 0
    assert not dense[users[kept], neg[kept]].any()  # a negative is never one of the user's positives
    # A triple is skipped when all MAX_TRIES draws hit the row: probability (row length / n_items)^tries
    # (1 for the full row, (29/30)^16 ~ 58% for the row with one free item). Skips per user are binomial.
    drawn_all = np.bincount(users, minlength=dense.shape[0])
    skips = np.bincount(users[~kept], minlength=dense.shape[0])
    p_skip = (dense.sum(1) / dense.shape[1]) ** K.MAX_TRIES
    sigma = np.sqrt(drawn_all * p_skip * (1 - p_skip))
    assert skips[0] == drawn_all[0] > 0
    assert np.all(np.abs(skips - drawn_all * p_skip) <= 5 * sigma + 2), (skips, drawn_all * p_skip)
    # Positives uniform over stored entries.
    n_items = matrix.shape[1]
    entry_keys = user_of.astype(np.int64) * n_items + indices  # sorted: rows in order, items sorted
    entry_counts = np.bincount(np.searchsorted(entry_keys, users * n_items + pos), minlength=len(indices))
    assert stats.chisquare(entry_counts).pvalue > 1e-4
    # Negatives uniform over each user's allowed items: pooled chi-square against n_u / (allowed count).
    observed = np.zeros(dense.shape)
    np.add.at(observed, (users[kept], neg[kept]), 1)
    drawn = np.bincount(users[kept], minlength=dense.shape[0])
    allowed = (~dense).sum(1)
    expected = np.where(~dense, (drawn / np.maximum(allowed, 1))[:, None], 0.0)
    cells = expected > 0
    assert np.all(observed[~cells] == 0)
    assert stats.chisquare(observed[cells], expected[cells]).pvalue > 1e-4
    assert np.all(neg[(users == 1) & kept] == 7)


@pytest.mark.parametrize("dim,n_samples", [(1, None), (5, None), (33, None), (4, 1), (4, 3), (4, K.LOOKAHEAD + 1)])
def test_epoch_matches_reference(matrix, rng, dim, n_samples):
    indptr, indices, user_of = csr_parts(matrix)
    n_users, n_items = matrix.shape
    users = (rng.standard_normal((n_users, dim)) * 0.3).astype(np.float32)
    items = (rng.standard_normal((n_items, dim)) * 0.3).astype(np.float32)
    bias = (rng.standard_normal(n_items) * 0.1).astype(np.float32)
    # Default: two passes; the short counts run the kernel's pipeline with fewer triples than it looks ahead.
    seed, n_samples, lr, reg = np.uint64(99), n_samples or 2 * len(indices), 0.05, 0.02
    triples = np.stack(K.sample_triples(indptr, indices, user_of, n_items, n_samples, seed, K.MAX_TRIES), axis=1)
    want_u, want_i, want_b, want_loss = reference_epoch(users, items, bias, triples, lr, reg)
    loss, steps, skipped = K.bpr_epoch(
        users, items, bias, indptr, indices, user_of, n_samples, lr, reg, np.array([seed], dtype=np.uint64), K.MAX_TRIES
    )
    assert steps[0] == int((triples[:, 2] >= 0).sum()) and skipped[0] == n_samples - steps[0]
    np.testing.assert_allclose(users, want_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, want_i, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bias, want_b, rtol=1e-4, atol=1e-5)
    assert loss[0] == pytest.approx(want_loss, rel=1e-4)


def test_full_rows_skip_every_triple_and_change_nothing():
    matrix = sp.csr_matrix(np.ones((4, 6), dtype=np.float32))
    indptr, indices, user_of = csr_parts(matrix)
    users, items, bias = np.ones((4, 3), np.float32), np.ones((6, 3), np.float32), np.ones(6, np.float32)
    loss, steps, skipped = K.bpr_epoch(
        users, items, bias, indptr, indices, user_of, 50, 0.1, 0.1, K.epoch_seeds(0, 1, 3), K.MAX_TRIES
    )
    assert steps.sum() == 0 and skipped.sum() == 50 and loss.sum() == 0
    assert np.all(users == 1) and np.all(items == 1) and np.all(bias == 1)


def test_huge_score_gaps_stay_finite():
    # One user, positive item 0, negatives 1..3: x = +-4e6 at every step. exp(|x|) overflows float32;
    # z and the loss must still be the exact limits (0 or 1; 0 or |x|), never NaN.
    matrix = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    indptr, indices, user_of = csr_parts(matrix)
    for sign in (1.0, -1.0):
        users = np.full((1, 2), 1e3, np.float32)
        items = np.full((4, 2), -1e3 * sign, np.float32)
        items[0] = 1e3 * sign
        bias = np.zeros(4, np.float32)
        loss, steps, _ = K.bpr_epoch(
            users, items, bias, indptr, indices, user_of, 30, 1e-12, 0.0, K.epoch_seeds(0, 1, 1), K.MAX_TRIES
        )
        assert np.isfinite(users).all() and np.isfinite(items).all() and np.isfinite(loss).all()
        assert steps.sum() == 30
        if sign > 0:  # ranked right by a mile: no loss, no gradient
            assert loss[0] == 0.0 and np.all(users == 1e3)
        else:  # ranked wrong by a mile: -ln sigmoid(x) = |x| = 4e6 per step, z = 1
            assert loss[0] / 30 == pytest.approx(4e6, rel=1e-3)


def test_epoch_seeds_are_a_pure_function():
    a, b = K.epoch_seeds(3, 2, 4), K.epoch_seeds(3, 2, 4)
    assert a.dtype == np.uint64 and np.array_equal(a, b) and len(set(a.tolist())) == 4
    assert not np.array_equal(a, K.epoch_seeds(3, 3, 4)) and not np.array_equal(a, K.epoch_seeds(4, 2, 4))


def planted(rng, n_users=150, n_items=90, groups=3):
    ug, ig = np.arange(n_users) % groups, np.arange(n_items) % groups
    dense = rng.random((n_users, n_items)) < np.where(ug[:, None] == ig[None, :], 0.3, 0.02)
    coo = sp.coo_matrix(dense.astype(np.float32))
    held = rng.random(coo.nnz) < 0.2
    part = lambda m: sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=dense.shape)
    return part(~held), part(held)


def test_bprmf_one_thread_is_deterministic_per_seed(rng):
    train, _ = planted(rng)
    a = BPRMF(*train.shape, TrainConfig(**QUICK, threads=1)).fit(train)
    b = BPRMF(*train.shape, TrainConfig(**QUICK, threads=1)).fit(train)
    c = BPRMF(*train.shape, TrainConfig(**QUICK, threads=1, seed=1)).fit(train)
    assert a.history[0]["trainer"] == "native"
    assert np.array_equal(a.user_vectors(), b.user_vectors()) and np.array_equal(a.item_vectors(), b.item_vectors())
    assert not np.array_equal(a.item_vectors(), c.item_vectors())
    # The kernel wrote into the torch parameters: the saved state is the trained model.
    state = a.state_tensors()
    np.testing.assert_array_equal(state["item_id.weight"].numpy(), a.item_vectors()[:, :-1])
    np.testing.assert_array_equal(state["item_bias.weight"].numpy()[:, 0], a.item_vectors()[:, -1])


def test_bprmf_hogwild_threads_learn_as_well(rng):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba's pool has one thread (NUMBA_NUM_THREADS=1): Hogwild cannot be exercised")
    train, test = planted(rng)
    config = dict(QUICK, epochs=40)
    one = BPRMF(*train.shape, TrainConfig(**config, threads=1)).fit(train)
    two = BPRMF(*train.shape, TrainConfig(**config, threads=2)).fit(train)
    auc = [evaluate_model(m, test, exclude=train, ks=(5,))["auc"] for m in (one, two)]
    assert auc[0] > 0.7 and auc[1] > auc[0] - 0.03
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # the pool size is restored after


def test_native_loss_falls(rng):
    train, _ = planted(rng)
    history = BPRMF(*train.shape, TrainConfig(**dict(QUICK, epochs=20))).fit(train).history
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    # ~30%-dense rows: a triple is skipped only when 16 negative draws all hit the row (~(0.3)^16).
    assert sum(e["skipped"] for e in history) <= 1e-3 * 20 * train.nnz


def test_trainer_resolution_and_defaults(rng):
    train, _ = planted(rng)
    features = rng.standard_normal((train.shape[1], 4)).astype(np.float32)
    bpr = BPRMF(*train.shape, TrainConfig(**QUICK))
    assert resolve_trainer(bpr.net, bpr.config) == "native"
    assert resolve_trainer(bpr.net, TrainConfig(**QUICK, trainer="torch")) == "torch"
    assert resolve_trainer(bpr.net, TrainConfig(**QUICK, loss="softmax")) == "torch"
    hybrid = HybridMF(*train.shape, features, TrainConfig(**QUICK, loss="bpr"))
    assert resolve_trainer(hybrid.net, hybrid.config) == "torch"
    with pytest.raises(ValueError, match="trainer='native'.*loss='softmax'"):
        BPRMF(*train.shape, TrainConfig(**QUICK, loss="softmax", trainer="native")).fit(train)
    with pytest.raises(ValueError, match="trainer='native'.*content"):
        HybridMF(*train.shape, features, TrainConfig(**QUICK, trainer="native")).fit(train)
    # lr/reg left as None take the running trainer's defaults.
    plain = TrainConfig(progress=False)
    assert plain.lr is None and plain.for_trainer("native").lr == TRAINER_DEFAULTS["native"]["lr"]
    assert plain.for_trainer("torch").reg == TRAINER_DEFAULTS["torch"]["reg"]
    assert TrainConfig(lr=0.2).for_trainer("torch").lr == 0.2


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="TrainConfig.trainer"):
        TrainConfig(trainer="gpu")
    with pytest.raises(ValueError, match="TrainConfig.threads"):
        TrainConfig(threads=-1)
    with pytest.raises(ValueError, match="TrainConfig.lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="TrainConfig.reg"):
        TrainConfig(reg=float("nan"))
    with pytest.raises(ValueError, match="TrainConfig.init_std"):
        TrainConfig(init_std=None)
    with pytest.raises(ValueError, match="TrainConfig.threads=.* exceeds"):
        train = sp.csr_matrix(np.eye(3, dtype=np.float32))
        BPRMF(3, 3, TrainConfig(**QUICK, threads=numba.config.NUMBA_NUM_THREADS + 1)).fit(train)
    # NumPy scalars from a search are accepted and stored as plain Python numbers (JSON-safe).
    config = TrainConfig(dim=np.int64(4), lr=np.float32(0.5), reg=np.float64(0.0))
    assert type(config.dim) is int and type(config.lr) is float and config.reg == 0.0


def _train_speed_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
    spec = importlib.util.spec_from_file_location("train_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_speed_synthetic_log_has_exactly_the_asked_positives():
    module = _train_speed_module()
    log = module.synthetic_log(50, 70, 1200, seed=3)
    assert log.shape == (50, 70) and log.nnz == 1200 and log.has_sorted_indices
    assert np.all(log.data == 1.0)  # distinct pairs: no summed duplicates
    assert (module.synthetic_log(50, 70, 1200, seed=3) != log).nnz == 0  # seeded


def test_train_speed_script_runs(tmp_path):
    pytest.importorskip("implicit", reason="the benchmark compares against implicit (pip install implicit)")
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "speed.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/train_speed.py",
            "--sizes",
            "tiny",
            "--repeats",
            "1",
            "--dim",
            "8",
            "--no-memory",
            "--json",
            str(out),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["results"]["tiny"]
    assert result["bpr"]["ours_samples_per_s"] > 0 and result["bpr"]["implicit_samples_per_s"] > 0
    # The memory probe, in this process (the script runs it in fresh ones).
    module = _train_speed_module()
    log = module.synthetic_log(60, 80, 900)
    saved = tmp_path / "log.npz"
    np.savez(saved, data=log.data, indices=log.indices, indptr=log.indptr, shape=np.array(log.shape))
    memory = module.peak_fit_memory("ours", "bpr", str(saved), 8)
    assert memory["peak_mb"] >= memory["before_mb"] > 0


def test_chunks_on_one_thread_run_in_order_like_the_reference(rng):
    # Several chunks (the Hogwild split) on a one-thread pool run one after the other: each is its own
    # stream of sample_triples, and the sizes split n_samples with the first chunks taking the extra.
    matrix = sp.random(20, 30, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    indptr, indices, user_of = csr_parts(matrix)
    users = (rng.standard_normal((20, 3)) * 0.3).astype(np.float32)
    items = (rng.standard_normal((30, 3)) * 0.3).astype(np.float32)
    bias = np.zeros(30, np.float32)
    seeds, n_samples = K.epoch_seeds(5, 1, 3), 101
    triples = np.concatenate(
        [
            np.stack(K.sample_triples(indptr, indices, user_of, 30, size, seed, K.MAX_TRIES), 1)
            for seed, size in zip(seeds, (34, 34, 33))
        ]
    )
    want_u, want_i, want_b, _ = reference_epoch(users, items, bias, triples, 0.05, 0.01)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _, steps, skipped = K.bpr_epoch(
            users, items, bias, indptr, indices, user_of, n_samples, 0.05, 0.01, seeds, K.MAX_TRIES
        )
    finally:
        numba.set_num_threads(before)
    assert list(steps + skipped) == [34, 34, 33]
    np.testing.assert_allclose(users, want_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, want_i, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bias, want_b, rtol=1e-4, atol=1e-5)
