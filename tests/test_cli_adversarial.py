"""Every bad ``mmrec-fast`` invocation exits 2 with one message naming the input, and loses nothing (issue 14).

Table-driven: each case builds its inputs in a scratch directory, runs the CLI in-process
(``cli.main(argv)``), and checks: exit code 2, the named input in stderr, no "Traceback", and that no
file that existed before the call changed. One BPR model is trained once per module and copied for
the cases that damage it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmrec_fast import cli, commands
from mmrec_fast.data import IdMap

TRAIN_FLAGS = [
    "--user-col",
    "uid",
    "--item-col",
    "movie",
    "--rating-col",
    "stars",
    "--time-col",
    "ts",
    "--epochs",
    "1",
    "--dim",
    "4",
    "--no-progress",
]


def write_log(path: Path) -> Path:
    """30 users x 20 items, ratings 1-5, string user ids."""
    rng = np.random.default_rng(11)
    rows = [
        (f"u{u:02d}", 100 + i, int(rng.integers(1, 6)), 1000 + u * 100 + i)
        for u in range(30)
        for i in range(20)
        if rng.random() < 0.35
    ]
    pd.DataFrame(rows, columns=["uid", "movie", "stars", "ts"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A log and a BPR model trained on it with the CLI (shared, never modified: cases copy it)."""
    root = tmp_path_factory.mktemp("cli_adversarial")
    log = write_log(root / "log.csv")
    assert cli.main(["train", "--data", str(log), *TRAIN_FLAGS, "--out", str(root / "model")]) == 0
    return log, root / "model"


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run(argv: list[str]) -> int:
    """cli.main in-process; argparse's usage errors leave through SystemExit, which carries the code."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def copy_model(trained, tmp: Path) -> Path:
    return Path(shutil.copytree(trained[1], tmp / "model_copy"))


def edit_meta(model: Path, change) -> None:
    meta = json.loads((model / "model.json").read_text())
    change(meta)
    (model / "model.json").write_text(json.dumps(meta))


def refresh_checksum(model: Path, name: str) -> None:
    data = (model / name).read_bytes()
    edit_meta(
        model, lambda m: m["files"].__setitem__(name, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    )


def users_file(tmp: Path, text="u03\nu04\n", name="users.txt") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def config(tmp: Path, name: str, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        (tmp / name).write_bytes(text)
    else:
        (tmp / name).write_text(text)
    return tmp / name


def train_argv(trained, tmp, *extra, out=None):
    return ["train", "--data", str(trained[0]), *TRAIN_FLAGS, "--out", str(out or tmp / "new_model"), *extra]


def evaluate_damaged(trained, tmp, damage):
    model = copy_model(trained, tmp)
    damage(model)
    return ["evaluate", "--model", str(model)]


def _truncate(path: Path, keep: int):
    path.write_bytes(path.read_bytes()[:keep])


def _flip(path: Path, offset: int):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _short_user_map(model: Path):
    IdMap(["u00", "u01", "u02"], name="user").save(model / "user_map.json")
    refresh_checksum(model, "user_map.json")


def _foreign_file_in_model(trained, tmp):
    model = copy_model(trained, tmp)
    (model / "notes.txt").write_text("mine")
    return train_argv(trained, tmp, "--overwrite", out=model)


def _dir_with_unrelated_files(trained, tmp):
    (tmp / "results").mkdir()
    (tmp / "results" / "paper.tex").write_text("precious")
    return train_argv(trained, tmp, "--overwrite", out=tmp / "results")


def _missing_encoder_weights(trained, tmp, monkeypatch):
    """A GroupLens folder with titles (so the hybrid needs text features) and no packaged text model."""
    from mmrec_fast import pipeline
    from mmrec_fast.encoders._offline import package_model_dir

    folder = tmp / "ml"
    folder.mkdir()
    rng = np.random.default_rng(3)
    rows = [
        f"{u}\t{i}\t{int(rng.integers(1, 6))}\t{1000 + u * 50 + i}"
        for u in range(1, 21)
        for i in range(1, 16)
        if rng.random() < 0.4
    ]
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    (folder / "u.item").write_text(
        "".join(
            f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n" for i in range(1, 16)
        ),
        encoding="latin-1",
    )

    def no_weights(*args, **kwargs):
        package_model_dir("mmrec_no_such_weights_pkg", "get_model_path", "mmrec-no-such-weights")

    monkeypatch.setattr(pipeline, "text_features", no_weights)
    return [
        "train",
        "--data",
        str(folder),
        "--model",
        "hybrid",
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        str(tmp / "hybrid"),
    ]


# name -> (argv builder(trained, tmp[, monkeypatch]), substrings that stderr must contain)
CASES = {
    # data loss (point 1)
    "out_is_the_input_csv": (lambda t, d: train_argv(t, d, out=t[0]), ["--out", "log.csv", "existing file"]),
    "out_is_the_input_csv_overwrite": (
        lambda t, d: train_argv(t, d, "--overwrite", out=t[0]),
        ["--out", "existing file"],
    ),
    "out_dir_with_unrelated_files": (_dir_with_unrelated_files, ["--out", "paper.tex"]),
    "out_is_a_saved_model": (lambda t, d: train_argv(t, d, out=copy_model(t, d)), ["--out", "--overwrite"]),
    "out_model_with_foreign_file": (_foreign_file_in_model, ["--out", "notes.txt", "did not write"]),
    "out_under_a_file": (lambda t, d: train_argv(t, d, out=t[0] / "model"), ["--out", "not a directory"]),
    "recommend_out_exists": (
        lambda t, d: [
            "recommend",
            "--model",
            str(t[1]),
            "--users",
            str(users_file(d)),
            "--out",
            str(users_file(d, "x", "old.jsonl")),
        ],
        ["--out", "--overwrite"],
    ),
    "recommend_out_is_users_file": (
        lambda t, d: [
            "recommend",
            "--model",
            str(t[1]),
            "--users",
            str(users_file(d)),
            "--out",
            str(d / "users.txt"),
            "--overwrite",
        ],
        ["--out", "input"],
    ),
    "recommend_out_inside_model": (
        lambda t, d: [
            "recommend",
            "--model",
            str(copy_model(t, d)),
            "--users",
            str(users_file(d)),
            "--out",
            str(d / "model_copy" / "r.jsonl"),
        ],
        ["--out", "inside the input directory"],
    ),
    "recommend_out_is_directory": (
        lambda t, d: ["recommend", "--model", str(t[1]), "--users", str(users_file(d)), "--out", str(d), "--overwrite"],
        ["--out", "is a directory"],
    ),
    "recommend_out_bad_extension": (
        lambda t, d: ["recommend", "--model", str(t[1]), "--users", str(users_file(d)), "--out", str(d / "r.txt")],
        ["--out", ".jsonl"],
    ),
    "evaluate_json_exists": (
        lambda t, d: ["evaluate", "--model", str(t[1]), "--json", str(users_file(d, "{}", "m.json"))],
        ["--json", "--overwrite"],
    ),
    # damaged or inconsistent model files (points 10, 11)
    "truncated_weights": (
        lambda t, d: evaluate_damaged(t, d, lambda m: _truncate(m / "weights.safetensors", 100)),
        ["weights.safetensors"],
    ),
    "flipped_byte_in_weights": (
        lambda t, d: evaluate_damaged(t, d, lambda m: _flip(m / "weights.safetensors", -5)),
        ["weights.safetensors", "SHA-256"],
    ),
    "model_json_without_kind": (
        lambda t, d: evaluate_damaged(t, d, lambda m: edit_meta(m, lambda x: x.pop("kind"))),
        ["model.json", "'kind'"],
    ),
    "model_json_not_json": (
        lambda t, d: evaluate_damaged(t, d, lambda m: (m / "model.json").write_text("{oops")),
        ["model.json", "JSON"],
    ),
    "user_map_of_3_ids": (lambda t, d: evaluate_damaged(t, d, _short_user_map), ["user_map.json", "3 user ids"]),
    "train_matrix_damaged": (
        lambda t, d: evaluate_damaged(t, d, lambda m: _flip(m / "train_matrix.npz", 40)),
        ["train_matrix.npz"],
    ),
    "model_without_data_record": (
        lambda t, d: evaluate_damaged(
            t, d, lambda m: edit_meta(m, lambda x: x["metadata"].update(data="/somewhere/ml-100k.inter"))
        ),
        ["--data", "pass --data"],
    ),
    "model_dir_missing": (lambda t, d: ["evaluate", "--model", str(d / "nope")], ["nope", "not a saved model"]),
    # config files (point 10)
    "config_unknown_data_key": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", '[data]\nsorce = "x"\n'))),
        ["--config", "[data]", "sorce"],
    ),
    "config_unknown_split_key": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", "[split]\ntest_sise = 0.3\n"))),
        ["--config", "[split]", "test_sise"],
    ),
    "config_train_is_5": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", "train = 5\n"))),
        ["--config", "[train]"],
    ),
    "config_bad_value_type": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", '[split]\nseed = "x"\n'))),
        ["--config", "seed"],
    ),
    "config_bad_train_value": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", "[train]\nlr = [1]\n"))),
        ["--config", "[train]"],
    ),
    "config_yaml_syntax": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.yaml", "train: [\n"))),
        ["--config", "c.yaml", "YAML"],
    ),
    "config_yaml_scalar": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.yaml", "hello\n"))),
        ["--config", "mapping"],
    ),
    "config_yaml_list": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.yaml", "- 1\n- 2\n"))),
        ["--config", "mapping"],
    ),
    "config_split_seed_negative": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", "[split]\nseed = -3\n"))),
        ["split seed", "-3"],
    ),
    "test_size_out_of_range": (
        lambda t, d: train_argv(t, d, "--test-size", "1.5"),
        ["--test-size", "test_size", "1.5"],
    ),
    "config_toml_syntax": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", "[train\n"))),
        ["--config", "TOML"],
    ),
    "config_not_utf8": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", b"\xff\xfe[train]"))),
        ["--config", "UTF-8"],
    ),
    "config_bad_format": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.toml", '[data]\nformat = "xls"\n'))),
        ["--config", "format"],
    ),
    "config_missing": (lambda t, d: train_argv(t, d, "--config", str(d / "none.toml")), ["--config", "none.toml"]),
    "config_wrong_suffix": (
        lambda t, d: train_argv(t, d, "--config", str(config(d, "c.ini", "[train]\n"))),
        ["--config", "c.ini"],
    ),
    # flags (point 10)
    "model_kind_unknown": (lambda t, d: train_argv(t, d, "--model", "svd"), ["--model", "svd"]),
    "device_bogus": (lambda t, d: train_argv(t, d, "--device", "bogus"), ["--device", "bogus"]),
    "device_bogus_evaluate": (lambda t, d: ["evaluate", "--model", str(t[1]), "--device", "bogus"], ["--device"]),
    "device_bogus_demo": (lambda t, d: ["demo", "--device", "nope", "--out", str(d / "demo")], ["--device"]),
    "bench_users_0": (lambda t, d: ["bench", "--users", "0"], ["--users"]),
    "bench_items_0": (lambda t, d: ["bench", "--items", "0"], ["--items"]),
    "bench_k_negative": (lambda t, d: ["bench", "-k", "-3"], ["-k"]),
    "demo_users_0": (lambda t, d: ["demo", "--synthetic", "--users", "0"], ["--users"]),
    "demo_dim_abc": (lambda t, d: ["demo", "--synthetic", "--dim", "abc"], ["--dim"]),
    "recommend_k_0": (
        lambda t, d: [
            "recommend",
            "--model",
            str(t[1]),
            "--users",
            str(users_file(d)),
            "--out",
            str(d / "r.jsonl"),
            "-k",
            "0",
        ],
        ["-k"],
    ),
    "recommend_temperature_nan": (
        lambda t, d: [
            "recommend",
            "--model",
            str(t[1]),
            "--users",
            str(users_file(d)),
            "--out",
            str(d / "r.jsonl"),
            "--temperature",
            "nan",
        ],
        ["--temperature"],
    ),
    "evaluate_k_0": (lambda t, d: ["evaluate", "--model", str(t[1]), "-k", "0"], ["-k"]),
    # input files
    "users_unknown_id": (
        lambda t, d: [
            "recommend",
            "--model",
            str(t[1]),
            "--users",
            str(users_file(d, "nobody\n")),
            "--out",
            str(d / "r.jsonl"),
        ],
        ["unknown", "nobody"],
    ),
    "users_not_utf8": (
        lambda t, d: [
            "recommend",
            "--model",
            str(t[1]),
            "--users",
            str(config(d, "u.txt", b"\xff\xfeu")),
            "--out",
            str(d / "r.jsonl"),
        ],
        ["--users", "UTF-8"],
    ),
    "users_missing": (
        lambda t, d: ["recommend", "--model", str(t[1]), "--users", str(d / "none.txt"), "--out", str(d / "r.jsonl")],
        ["--users", "none.txt"],
    ),
    "data_missing": (
        lambda t, d: ["train", "--data", str(d / "none.csv"), "--out", str(d / "m")],
        ["--data", "none.csv"],
    ),
    "data_directory_without_u_data": (lambda t, d: ["train", "--data", str(d), "--out", str(d / "m")], ["u.data"]),
    "demo_out_is_a_file": (lambda t, d: ["demo", "--out", str(t[0])], ["--out", "existing file"]),
    "demo_out_with_unrelated_files": (
        lambda t, d: ["demo", "--out", str(config(d, "thesis.pdf", "x").parent)],
        ["--out", "not a demo output", "thesis.pdf"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_invocation_exits_2_names_the_input_and_changes_nothing(trained, tmp_path, capsys, name):
    build, expected = CASES[name]
    argv = build(trained, tmp_path)
    before_tmp, before_model = snapshot(tmp_path), snapshot(trained[1])
    before_log = trained[0].read_bytes()
    capsys.readouterr()
    code = run(argv)
    captured = capsys.readouterr()
    assert code == 2, (code, captured.err)
    assert "Traceback" not in captured.err + captured.out
    for text in expected:
        assert text in captured.err, (text, captured.err)
    lines = captured.err.strip().splitlines()
    if lines[0].startswith("usage:"):  # argparse's own errors: its usage block, then one error line
        assert lines[-1].startswith("mmrec-fast ") and "error: argument" in lines[-1], captured.err
    else:
        assert len(lines) == 1, captured.err
    assert snapshot(tmp_path) == before_tmp, "a failed command changed or added files"
    assert snapshot(trained[1]) == before_model and trained[0].read_bytes() == before_log
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_missing_encoder_weights_is_exit_2(trained, tmp_path, capsys, monkeypatch):
    argv = _missing_encoder_weights(trained, tmp_path, monkeypatch)
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "mmrec-no-such-weights" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hybrid").exists()


def test_ctrl_c_is_exit_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "cmd_bench", interrupted)
    assert cli.main(["bench"]) == 130
    assert capsys.readouterr().err.strip() == "mmrec-fast bench: interrupted"


def test_a_real_bug_still_shows_its_traceback(monkeypatch):
    """Only expected user errors become exit 2: a programming error must stay visible."""

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(commands, "cmd_bench", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["bench"])


def test_outputs_into_missing_directories_are_created(trained, tmp_path, capsys):
    users = users_file(tmp_path)
    out = tmp_path / "a" / "b" / "recs.jsonl"
    assert cli.main(["recommend", "--model", str(trained[1]), "--users", str(users), "--out", str(out), "-k", "3"]) == 0
    assert len(out.read_text().splitlines()) == 6
    metrics = tmp_path / "c" / "metrics.json"
    assert cli.main(["evaluate", "--model", str(trained[1]), "-k", "5", "--json", str(metrics)]) == 0
    assert "ndcg@5" in json.loads(metrics.read_text())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_overwrite_replaces_own_outputs_only(trained, tmp_path, capsys):
    model = copy_model(trained, tmp_path)
    old_weights = (model / "weights.safetensors").read_bytes()
    assert cli.main(train_argv(trained, tmp_path, "--overwrite", "--seed", "5", "--all-data", out=model)) == 0
    assert (model / "weights.safetensors").read_bytes() != old_weights
    assert json.loads((model / "model.json").read_text())["metadata"]["all_data"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_copy"]
    users = users_file(tmp_path)
    out = tmp_path / "r.csv"
    out.write_text("old")
    assert (
        cli.main(
            ["recommend", "--model", str(model), "--users", str(users), "--out", str(out), "--overwrite", "-k", "2"]
        )
        == 0
    )
    assert len(pd.read_csv(out)) == 4


def _fake_demo(monkeypatch, behaviour="ok"):
    """Replace the MovieLens download and the experiment with tiny fakes writing the same layout."""
    from mmrec_fast import data, pipeline

    calls = []

    def run_experiment(data_, *, out_dir, log=print, **kwargs):
        calls.append(out_dir)
        out = Path(out_dir)
        (out / "models").mkdir(parents=True, exist_ok=True)
        (out / "cache").mkdir(exist_ok=True)
        (out / "cache" / "shard.npy").write_text(f"cache {len(calls)}")
        (out / "metrics.json").write_text(json.dumps({"run": len(calls)}))
        log(f"wrote {out}/: metrics.json")
        if behaviour == "interrupt":
            raise KeyboardInterrupt

    monkeypatch.setattr(data, "load_movielens_100k", lambda: "fake data")
    monkeypatch.setattr(pipeline, "run_experiment", run_experiment)
    return calls


def test_demo_output_is_replaced_atomically_and_only_when_its_own(tmp_path, monkeypatch, capsys):
    calls = _fake_demo(monkeypatch)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}/" in printed, "messages must name the final folder, not the staging one"
    assert json.loads((out / "metrics.json").read_text()) == {"run": 1}
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text()) == {"run": 2}
    (out / "my_analysis.ipynb").write_text("precious")
    assert cli.main(["demo", "--out", str(out), "--overwrite"]) == 2
    assert "my_analysis.ipynb" in capsys.readouterr().err
    assert (out / "my_analysis.ipynb").read_text() == "precious" and len(calls) == 2
    (out / "my_analysis.ipynb").unlink()

    _fake_demo(monkeypatch, "interrupt")
    assert cli.main(["demo", "--out", str(out), "--overwrite"]) == 130
    assert json.loads((out / "metrics.json").read_text()) == {"run": 2}, "an interrupted demo changed the output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


@pytest.mark.parametrize("kind", ["ease", "mostpop"])
def test_other_model_kinds_train_save_and_serve(trained, tmp_path, capsys, kind):
    model = tmp_path / kind
    assert cli.main(["train", "--data", str(trained[0]), *TRAIN_FLAGS, "--model", kind, "--out", str(model)]) == 0
    meta = json.loads((model / "model.json").read_text())
    assert meta["kind"] == kind and "train_matrix.npz" in meta["files"]
    out = tmp_path / "r.jsonl"
    assert (
        cli.main(
            ["recommend", "--model", str(model), "--users", str(users_file(tmp_path)), "--out", str(out), "-k", "3"]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in records] == ["u03"] * 3 + ["u04"] * 3
