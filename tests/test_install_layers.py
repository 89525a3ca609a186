"""The core install: the engine works with none of the optional libraries, and every feature behind an
extra says which extra to install.

The optional libraries are blocked in a fresh interpreter by a meta-path finder that raises
ImportError for them (and their submodules), so these tests hold on a machine that has them all.
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "pandas", "pyarrow", "sklearn", "matplotlib", "transformers", "yaml", "ray", "cupy", "PIL")
# The core's dependencies (pyproject.toml): nothing else may be needed by `import mmrec_fast` or the engine.
CORE = {"numpy", "scipy", "numba", "tqdm"}

PRELUDE = textwrap.dedent(
    """
    import json, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Blocker:
        # A meta-path finder: pretends the optional libraries are not installed.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for the test: {name}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    results = {}

    def expect_missing(label, func, extra):
        try:
            func()
        except ImportError as exc:
            results[label] = str(exc)
            assert f'mmrec_fast[{extra}]' in str(exc), (label, str(exc))
        else:
            raise AssertionError(f"{label}: no ImportError without its extra")
    """
)


def _run(body: str, tmp_path, blocked=BLOCKED) -> dict:
    """Run PRELUDE + body in a fresh interpreter (cwd outside the repo) with ``blocked`` unimportable;
    return its last JSON line."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body), ",".join(blocked)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_engine_works_without_any_optional_library(tmp_path):
    out = _run(
        """
        import numpy as np
        import scipy.sparse as sp
        import mmrec_fast as mf
        from mmrec_fast.reference import topk_reference

        rng = np.random.default_rng(0)
        users = rng.normal(size=(7, 5)).astype(np.float32)
        items = rng.normal(size=(300, 5)).astype(np.float32)
        items[10] = items[11]  # a tie: the lower id first
        exclude = sp.random(7, 300, density=0.05, format="csr", random_state=1)
        top = mf.topk(users, items, 20, exclude=exclude, temperature=0.5)
        ref_indices, _, ref_lse = topk_reference(
            users, items, 20, excl_indptr=exclude.indptr, excl_indices=exclude.indices, temperature=0.5
        )
        assert np.array_equal(top.indices, ref_indices)
        np.testing.assert_allclose(top.log_normalizer, ref_lse, rtol=1e-5, atol=1e-5)
        index = mf.ItemIndex(items)
        assert np.array_equal(index.topk(users, 20, exclude=exclude, temperature=0.5).indices, ref_indices)
        pairs = mf.score_pairs(users, items, np.array([0, 3]), np.array([5, 299]))
        np.testing.assert_allclose(pairs.scores, [users[0] @ items[5], users[3] @ items[299]], rtol=1e-5)
        dense = mf.score(users, items)
        np.testing.assert_allclose(mf.softmax(dense, axis=1).sum(axis=1), 1.0, rtol=1e-5)
        ref_lse = np.log(np.exp(dense.astype(np.float64)).sum(axis=1))
        np.testing.assert_allclose(mf.logsumexp(dense, axis=1), ref_lse, rtol=1e-5)
        halves = [mf.topk(users, items[:150], 20), mf.topk(users, items[150:], 20)]
        halves[1].indices[halves[1].indices >= 0] += 150
        merged = mf.merge_topk(halves)
        assert np.array_equal(merged.indices, mf.topk(users, items, 20).indices)
        import mmrec_fast.models, mmrec_fast.metrics, mmrec_fast.evaluation, mmrec_fast.encoders
        import mmrec_fast.preprocess, mmrec_fast.distributed
        leaked = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
        print(json.dumps({"backends": sorted(k for k, v in mf.available_backends().items() if v.available),
                          "version": mf.__version__, "leaked": leaked}))
        """,
        tmp_path,
    )
    assert out["leaked"] == []
    assert "numpy" in out["backends"] and "torch" not in out["backends"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", out["version"])


def test_features_behind_an_extra_name_it(tmp_path):
    out = _run(
        """
        import numpy as np
        import scipy.sparse as sp

        def import_data():
            import mmrec_fast.data

        def bpr():
            from mmrec_fast.models import BPRMF

        def text_encoder():
            from mmrec_fast.encoders import TextEncoder
            TextEncoder()

        def image_encoder():
            from mmrec_fast.encoders import ImageEncoder
            ImageEncoder()

        def ray():
            import mmrec_fast.distributed as d
            d.init()

        def load_image():
            from mmrec_fast.preprocess.image import load_image
            load_image(np.zeros((4, 4, 3), np.uint8))

        expect_missing("data", import_data, "data")
        expect_missing("pipeline", lambda: __import__("mmrec_fast.pipeline"), "data")
        expect_missing("bpr", bpr, "models")
        expect_missing("text", text_encoder, "text")
        expect_missing("image", image_encoder, "encoders")
        expect_missing("image_preprocess", load_image, "encoders")
        expect_missing("ray", ray, "ray")

        # Models without torch: EASE / iALS / MostPop fit and score on the core.
        from mmrec_fast.models import EASE, IALS, MostPop
        train = sp.random(30, 40, density=0.2, format="csr", random_state=0)
        train.data[:] = 1
        for model in (EASE(30, 40, reg=10.0), IALS(30, 40, dim=4, epochs=2, seed=0), MostPop(30, 40)):
            model.fit(train)
            assert model.user_vectors().shape[0] == 30
        print(json.dumps(results))
        """,
        tmp_path,
    )
    assert "pip install" in out["bpr"] and "torch" in out["bpr"]


def _pipeline_importable():
    """mmrec_fast.pipeline (home of the plots) itself needs the [data] and [models] extras."""
    for module in ("pandas", "pyarrow", "torch"):
        pytest.importorskip(module, reason="mmrec_fast.pipeline needs the [data] and [models] extras")


def test_plots_without_matplotlib_name_the_plots_extra(tmp_path):
    _pipeline_importable()
    out = _run(
        """
        from mmrec_fast.pipeline.plots import plot_metrics_at_k

        expect_missing("plots", lambda: plot_metrics_at_k({}, [1], "x.png"), "plots")
        print(json.dumps(results))
        """,
        tmp_path,
        blocked=("matplotlib",),
    )
    assert "matplotlib" in out["plots"]


def test_cli_engine_commands_on_the_core(tmp_path):
    out = _run(
        """
        import contextlib, io
        from mmrec_fast.cli import main

        codes = {}
        for name, argv in {
            "version": ["--version"],
            "backends": ["backends"],
            "synthetic": ["demo", "--synthetic", "--users", "30", "--items", "500", "--dim", "8", "--show", "1"],
            "bench": ["bench", "--users", "20", "--items", "2000", "--dim", "8", "-k", "5"],
            "train": ["train", "--model", "bpr", "--out", "m"],
        }.items():
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    codes[name] = main(argv)
                except SystemExit as exc:  # --version exits through argparse
                    codes[name] = exc.code
            codes[name + "_out"] = stdout.getvalue()[-300:]
            codes[name + "_err"] = stderr.getvalue()[-300:]
        print(json.dumps(codes))
        """,
        tmp_path,
    )
    for name in ("version", "backends", "synthetic", "bench"):
        assert out[name] == 0, (name, out[name + "_err"])
    assert out["version_out"].startswith("mmrec-fast ")
    # A command that needs an extra: one line naming it, exit 2 (no traceback).
    assert out["train"] == 2 and 'pip install "mmrec_fast[' in out["train_err"], out["train_err"]
    assert "Traceback" not in out["train_err"]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads TOML with the standard library")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_pyproject_core_is_the_engine_and_nothing_is_pinned_that_users_share():
    project = _pyproject()["project"]
    core = project["dependencies"]
    assert {_name(r) for r in core} == CORE
    assert not [r for r in core if "==" in r], core
    extras = project["optional-dependencies"]
    for extra in ("models", "text", "encoders", "data", "plots", "serve", "ray", "gpu-cu12", "gpu-cu13", "all", "test"):
        assert extra in extras, extra
    # Libraries a user's own environment holds: ranges only, in every extra.
    shared = {"torch", "numpy", "scipy", "pandas", "pyarrow", "transformers", "scikit-learn", "matplotlib"}
    pinned = [r for reqs in extras.values() for r in reqs if _name(r) in shared and "==" in r]
    assert not pinned, pinned


def test_optional_extras_named_in_messages_exist_in_pyproject():
    from mmrec_fast._optional import EXTRAS

    extras = set(_pyproject()["project"]["optional-dependencies"])
    assert set(EXTRAS) <= extras, set(EXTRAS) - extras


def test_require_names_the_extra_and_checks_it():
    from mmrec_fast._optional import MissingDependencyError, require

    assert require("json", extra="data").dumps([1]) == "[1]"
    with pytest.raises(MissingDependencyError, match=r'pip install "mmrec_fast\[plots\]"') as info:
        require("mmrec_no_such_module_xyz", extra="plots", feature="charts")
    assert isinstance(info.value, ImportError) and "charts" in str(info.value)
    with pytest.raises(ValueError, match="extra"):
        require("json", extra="no-such-extra")


def test_version_has_one_source():
    import mmrec_fast
    from mmrec_fast._version import __version__

    assert mmrec_fast.__version__ == __version__
    assert 'version = { attr = "mmrec_fast._version.__version__" }' in (ROOT / "pyproject.toml").read_text()
    try:
        from importlib.metadata import PackageNotFoundError, version

        installed = version("mmrec_fast")
    except PackageNotFoundError:
        pytest.skip("mmrec_fast is not installed (metadata absent)")
    assert installed == __version__


def test_plots_leave_the_matplotlib_backend_and_pyplot_alone(tmp_path):
    _pipeline_importable()
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    out = _run(
        """
        import matplotlib
        matplotlib.use("svg")  # the application's choice
        from mmrec_fast.pipeline.plots import plot_metrics_at_k, plot_training

        metrics = {"bpr": {f"{m}@{k}": 0.1 * k for m in ("precision", "recall", "ndcg", "hit") for k in (1, 5)}}
        a = plot_metrics_at_k(metrics, [1, 5], "m.png")
        b = plot_training({"bpr": [{"epoch": 1, "loss": 0.5, "val_ndcg@10": 0.2}, {"epoch": 2, "loss": 0.4}]}, "t.png")
        print(json.dumps({"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules,
                          "png": [open(p, "rb").read(8).hex() for p in (a, b)]}))
        """,
        tmp_path,
        blocked=(),
    )
    assert out["backend"] == "svg" and out["pyplot"] is False
    assert out["png"] == ["89504e470d0a1a0a"] * 2


# The command-line layer talks to the user on stdout/stderr; serve/command.py and serve/supervisor.py
# run only under the `mmrec-fast serve` subcommand.
_CLI_LAYER = {"cli.py", "commands.py", "tune_command.py", "demo.py", "serve/command.py", "serve/supervisor.py"}


def test_library_does_not_print_outside_the_cli_layer():
    """Messages from the library go through logging (the application decides where they go)."""
    import ast

    offenders = []
    for path in sorted((ROOT / "mmrec_fast").rglob("*.py")):
        if path.relative_to(ROOT / "mmrec_fast").as_posix() in _CLI_LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # Any use of the name: a call, or print handed on as a callback.
            if isinstance(node, ast.Name) and node.id == "print" and isinstance(node.ctx, ast.Load):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
