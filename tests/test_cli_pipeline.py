"""The pipeline subcommands of ``mmrec-fast`` on a tiny interaction log: train, evaluate, recommend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmrec_fast.cli import main


@pytest.fixture
def log_csv(tmp_path):
    """60 users x 40 items, two taste groups, ratings 1-5, string user ids."""
    rng = np.random.default_rng(7)
    rows = []
    for u in range(60):
        for i in range(40):
            if rng.random() < (0.4 if (u % 2) == (i % 2) else 0.05):
                rows.append((f"u{u:02d}", 100 + i, int(rng.integers(1, 6)), 1_000_000 + len(rows)))
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["uid", "movie", "stars", "ts"]).to_csv(path, index=False)
    return path


def _train(log_csv, out, *extra):
    return main(
        [
            "train",
            "--data",
            str(log_csv),
            "--user-col",
            "uid",
            "--item-col",
            "movie",
            "--rating-col",
            "stars",
            "--time-col",
            "ts",
            "--out",
            str(out),
            "--epochs",
            "3",
            "--dim",
            "8",
            "--no-progress",
            *extra,
        ]
    )


def test_train_evaluate_recommend_round_trip(tmp_path, log_csv, capsys):
    model_dir = tmp_path / "bpr"
    assert _train(log_csv, model_dir) == 0
    trained = capsys.readouterr().out
    assert "saved bpr model" in trained and '"ndcg@10"' in trained
    assert {"model.json", "weights.safetensors", "user_map.json", "item_map.json", "train_matrix.npz"} <= {
        p.name for p in model_dir.iterdir()
    }

    # evaluate re-creates the same split from the saved metadata: same numbers as train printed.
    metrics_file = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(model_dir), "-k", "5", "10", "--json", str(metrics_file)]) == 0
    shown = json.loads(trained[trained.index("{") :])
    again = json.loads(metrics_file.read_text())
    assert again["ndcg@10"] == pytest.approx(shown["ndcg@10"], abs=1e-4)
    assert again["n_users"] == shown["n_users"]

    users = tmp_path / "users.txt"
    users.write_text("u03\nu10\n")
    out = tmp_path / "recs.jsonl"
    assert main(["recommend", "--model", str(model_dir), "--users", str(users), "--out", str(out), "-k", "5"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in records] == ["u03"] * 5 + ["u10"] * 5
    log = pd.read_csv(log_csv)
    import scipy.sparse as sp

    from mmrec_fast.models import load_model

    saved = load_model(model_dir)
    seen = sp.load_npz(model_dir / "train_matrix.npz")
    for rec in records:
        u = saved.user_map.encode(np.asarray([rec["user"]], dtype=object))[0]
        i = saved.item_map.encode(np.asarray([rec["item"]]))[0]
        assert seen[u, i] == 0, "a training item was recommended"
        assert rec["item"] in set(log["movie"])
        assert 0 < rec["probability"] <= 1
        assert rec["contrib_id"] + rec["contrib_bias"] == pytest.approx(rec["score"], rel=1e-4, abs=1e-5)
    probs = [r["probability"] for r in records[:5]]
    assert probs == sorted(probs, reverse=True)

    for suffix in ("csv", "parquet"):
        path = tmp_path / f"recs.{suffix}"
        assert main(["recommend", "--model", str(model_dir), "--users", str(users), "--out", str(path)]) == 0
        frame = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
        assert len(frame) == 20 and {"user", "rank", "item", "probability", "share_id"} <= set(frame.columns)


def test_config_file_and_flags(tmp_path, log_csv, capsys):
    toml = tmp_path / "cfg.toml"
    toml.write_text("[train]\nepochs = 2\nlr = 0.01\n\n[split]\ntest_size = 0.25\nseed = 5\n")
    assert _train(log_csv, tmp_path / "a", "--config", str(toml)) == 0
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    # lr comes from the file; the --epochs 3 flag of _train overrides the file's epochs = 2 (the saved
    # config holds the epoch count early stopping chose, at most the bound).
    assert meta["config"]["lr"] == 0.01 and meta["config"]["epochs"] <= 3
    assert meta["metadata"]["split"]["test_size"] == 0.25 and meta["metadata"]["split"]["seed"] == 5
    yaml_cfg = tmp_path / "cfg.yaml"
    yaml_cfg.write_text("train:\n  reg: 0.002\n")
    assert _train(log_csv, tmp_path / "b", "--config", str(yaml_cfg)) == 0
    assert json.loads((tmp_path / "b" / "model.json").read_text())["config"]["reg"] == 0.002


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_user", "unknown"),
        ("empty_users", "lists no user id"),
        ("bad_section", "unknown section"),
        ("bad_option", "unknown training option"),
        ("missing_column", "movie_id"),
        ("hybrid_without_text", "no item side information"),
        ("missing_data", "neither 'ml-100k' nor an existing file"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, log_csv, capsys, case, message):
    model_dir = tmp_path / "m"
    if case in ("unknown_user", "empty_users"):
        assert _train(log_csv, model_dir) == 0
        users = tmp_path / "users.txt"
        users.write_text("nobody\n" if case == "unknown_user" else "\n")
        code = main(["recommend", "--model", str(model_dir), "--users", str(users), "--out", str(tmp_path / "r.jsonl")])
    elif case == "bad_section":
        cfg = tmp_path / "c.toml"
        cfg.write_text("[trian]\nepochs = 2\n")
        code = _train(log_csv, model_dir, "--config", str(cfg))
    elif case == "bad_option":
        cfg = tmp_path / "c.toml"
        cfg.write_text("[train]\nepochz = 2\n")
        code = _train(log_csv, model_dir, "--config", str(cfg))
    elif case == "missing_column":
        code = main(
            [
                "train",
                "--data",
                str(log_csv),
                "--user-col",
                "uid",
                "--item-col",
                "movie_id",
                "--out",
                str(model_dir),
                "--no-progress",
            ]
        )
    elif case == "hybrid_without_text":
        code = _train(log_csv, model_dir, "--model", "hybrid")
    else:
        code = main(["train", "--data", str(tmp_path / "nope.csv"), "--out", str(model_dir)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "train", "evaluate", "recommend", "bench", "backends"):
        assert command in text


def test_bench_runs_every_backend(capsys):
    assert main(["bench", "--users", "50", "--items", "3000", "--dim", "16", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "U=50 I=3000" in out and "native" in out
