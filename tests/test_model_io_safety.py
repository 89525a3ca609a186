"""Model files never lose data and never load silently wrong (issue 14, points 1, 2/11 and the save registry).

save_model: where it may write (absent / empty / own model with overwrite), what it never replaces
(files, links, foreign directories), atomic replacement (interrupted saves leave the old model).
load_model: checksums, array manifest, sizes, id-map lengths, metadata types, format 1.
The registry: a tiny Recommender defined here round-trips bit for bit through state()/from_state().
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_fast import _outputs
from mmrec_fast.data import IdMap
from mmrec_fast.models import BPRMF, ContentProfile, Recommender, ScoreBlock, TrainConfig, load_model, save_model
from mmrec_fast.models import base as models_base
from mmrec_fast.models.io import FORMAT_VERSION, saved_model_files

N_USERS, N_ITEMS = 7, 11


# -- a tiny model that saves through the generic protocol ---------------------------------------------


class TinyModel(Recommender):
    """Fixed vectors plus extra arrays of awkward dtypes/layouts, to test bit-exact generic saving."""

    kind = "test-tiny-io"

    def __init__(self, users: np.ndarray, items: np.ndarray, extras: dict, params: dict):
        self._u, self._i, self.extras, self.params = users, items, extras, params
        self.history = []

    @property
    def n_users(self):
        return self._u.shape[0]

    @property
    def n_items(self):
        return self._i.shape[0]

    def user_vectors(self):
        return self._u

    def item_vectors(self):
        return self._i

    def blocks(self):
        return [ScoreBlock("id", 0, self._u.shape[1] - 1), ScoreBlock("bias", self._u.shape[1] - 1, self._u.shape[1])]

    def state(self):
        return {"users": self._u, "items": self._i, **self.extras}, dict(self.params)

    @classmethod
    def from_state(cls, arrays, params):
        arrays = dict(arrays)
        return cls(arrays.pop("users"), arrays.pop("items"), arrays, params)


class NoStateModel(TinyModel):
    """Registered, but does not implement the protocol (inherits Recommender's defaults)."""

    kind = "test-no-state-io"
    state = Recommender.state
    from_state = Recommender.from_state


class InheritsKind(TinyModel):
    """No kind of its own: would load back as TinyModel, so saving it must be refused."""


@pytest.fixture(scope="module", autouse=True)
def _unregister_test_kinds():
    yield
    for kind in [k for k in models_base._KINDS if k.startswith("test-")]:
        del models_base._KINDS[kind]


def tiny_model(rng, n_users=N_USERS, n_items=N_ITEMS) -> TinyModel:
    extras = {
        "f64_scalar": np.array(rng.standard_normal()),
        "i64": rng.integers(-(2**62), 2**62, size=5, dtype=np.int64),
        "u8": rng.integers(0, 255, size=(2, 3), dtype=np.uint8),
        "flags": rng.random(4) < 0.5,
        "f16": rng.standard_normal(3).astype(np.float16),
        "empty": np.zeros((0, 3), np.float32),
        "strided": rng.standard_normal((6, 4))[::2, ::-1],  # not contiguous: stored as its values
        "big_endian": np.arange(4, dtype=">i4"),  # stored in native order, same values
        "specials": np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324], dtype=np.float64),
    }
    users = rng.standard_normal((n_users, 4)).astype(np.float32)
    items = rng.standard_normal((n_items, 4)).astype(np.float32)
    return TinyModel(users, items, extras, {"alpha": 0.5, "name": "x", "nested": {"a": [1, 2, None]}})


def bpr_model() -> BPRMF:
    # Untrained on purpose: saving cares about the weights, not how good they are (and it is fast).
    return BPRMF(N_USERS, N_ITEMS, TrainConfig(dim=4, epochs=1, progress=False, seed=3))


def id_maps():
    users = IdMap(np.arange(100, 100 + N_USERS), name="user")
    items = IdMap(np.array([f"m{i:03d}" for i in range(N_ITEMS)], dtype=object), name="item")
    return users, items


def same_vectors(a: Recommender, b: Recommender) -> bool:
    return (
        np.array_equal(a.user_vectors(), b.user_vectors())
        and np.array_equal(a.item_vectors(), b.item_vectors())
        and a.user_vectors().tobytes() == b.user_vectors().tobytes()
    )


def siblings(path) -> list[str]:
    """Everything next to ``path`` other than itself (staging leftovers would show up here)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def rewrite_meta(path, change) -> None:
    meta = json.loads((path / "model.json").read_text())
    change(meta)
    (path / "model.json").write_text(json.dumps(meta))


def refresh_checksum(path, name) -> None:
    """Make model.json agree with a deliberately edited file, so a deeper check must catch the edit."""
    data = (path / name).read_bytes()

    def change(meta):
        meta["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    rewrite_meta(path, change)


# -- where save_model may write ----------------------------------------------------------------------


def test_absent_path_with_missing_parents_and_empty_directory(tmp_path):
    model = bpr_model()
    deep = save_model(model, tmp_path / "a" / "b" / "model")
    assert same_vectors(load_model(deep).model, model)
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(model, empty)
    assert same_vectors(load_model(empty).model, model)
    assert siblings(empty) == ["a"], "no staging directory may be left behind"
    # The model directory gets the user's usual permissions (tempfile.mkdtemp would give 0700).
    reference = tmp_path / "reference"
    reference.mkdir()
    assert (deep.stat().st_mode & 0o777) == (reference.stat().st_mode & 0o777)
    (tmp_path / "reference.txt").touch()
    file_mode = (tmp_path / "reference.txt").stat().st_mode & 0o777
    assert {p.name: p.stat().st_mode & 0o777 for p in deep.iterdir()} == {p.name: file_mode for p in deep.iterdir()}


@pytest.mark.parametrize(
    "case",
    [
        "file",
        "csv_input",
        "foreign_dir",
        "foreign_model_json",
        "symlink_to_model",
        "dangling_symlink",
        "nested_empty_dirs",
        "parent_is_file",
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_never_replaces_what_it_did_not_write(tmp_path, case, overwrite):
    target = tmp_path / "target"
    before = None
    if case in ("file", "csv_input"):
        target.write_text("user,item\n1,2\n" if case == "csv_input" else "precious")
        before = target.read_bytes()
    elif case == "foreign_dir":
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    elif case == "foreign_model_json":
        target.mkdir()
        (target / "model.json").write_text('{"kind": "bpr"}')  # someone else's model.json
        (target / "weights.safetensors").write_text("precious")
    elif case == "symlink_to_model":
        real = save_model(bpr_model(), tmp_path / "real")
        target.symlink_to(real, target_is_directory=True)
    elif case == "dangling_symlink":
        target.symlink_to(tmp_path / "nowhere")
    elif case == "nested_empty_dirs":
        (target / "sub").mkdir(parents=True)
    else:
        (tmp_path / "afile").write_text("precious")
        target = tmp_path / "afile" / "model"
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    with pytest.raises(ValueError, match="^directory: "):
        save_model(bpr_model(), target, overwrite=overwrite)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()} == snapshot
    if before is not None:
        assert target.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_replacing_a_saved_model_needs_overwrite_and_is_complete(tmp_path):
    rng = np.random.default_rng(0)
    users, items = id_maps()
    first = save_model(bpr_model(), tmp_path / "m", user_map=users, item_map=items)
    old = load_model(first).model
    with pytest.raises(ValueError, match="overwrite=True"):
        save_model(
            ContentProfile(rng.standard_normal((N_ITEMS, 3)).astype(np.float32)).fit(
                sp.random(N_USERS, N_ITEMS, density=0.3, format="csr", random_state=1)
            ),
            first,
        )
    assert same_vectors(load_model(first).model, old), "a refused save changed the model"
    content = ContentProfile(rng.standard_normal((N_ITEMS, 3)).astype(np.float32)).fit(
        sp.random(N_USERS, N_ITEMS, density=0.3, format="csr", random_state=1)
    )
    save_model(content, first, overwrite=True)
    loaded = load_model(first)
    assert loaded.model.kind == "content" and same_vectors(loaded.model, content)
    assert loaded.user_map is None and not (first / "user_map.json").exists(), "old files must not survive"
    assert siblings(first) == []


def test_model_directory_with_a_foreign_file_is_refused_even_with_overwrite(tmp_path):
    path = save_model(bpr_model(), tmp_path / "m")
    (path / "my_notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="did not write.*my_notes.txt"):
        save_model(bpr_model(), path, overwrite=True)
    assert (path / "my_notes.txt").read_text() == "precious"
    assert load_model(path).model.n_users == N_USERS


@pytest.mark.parametrize("exchange", ["renameat2", "two_renames"])
@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_keeps_the_old_model(tmp_path, monkeypatch, exchange, failure):
    if exchange == "two_renames":
        monkeypatch.setattr(_outputs, "_exchange", lambda a, b: False)
    model = bpr_model()
    path = save_model(model, tmp_path / "m")

    def writer(p):
        p.write_text("half")
        raise failure

    with pytest.raises(type(failure)):
        save_model(model, path, overwrite=True, extra_files={"extra.txt": writer})
    assert same_vectors(load_model(path).model, model)
    assert siblings(path) == []
    # The same replacement without the failure works on both code paths.
    save_model(model, path, overwrite=True, extra_files={"extra.txt": lambda p: p.write_text("ok")})
    assert load_model(path).extra_files["extra.txt"].read_text() == "ok"
    assert siblings(path) == []


def test_exchange_swaps_atomically_where_the_system_can(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("from a")
    (b / "y").write_text("from b")
    if not _outputs._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this system/file system")
    assert (b / "x").read_text() == "from a" and (a / "y").read_text() == "from b"


def test_format_1_directory_is_recognised_and_still_loads(tmp_path):
    model = bpr_model()
    path = save_model(model, tmp_path / "m")

    def to_v1(meta):
        for key in ("library", "files", "arrays"):
            del meta[key]
        meta["format"] = 1

    rewrite_meta(path, to_v1)
    with pytest.warns(UserWarning, match="format 1"):
        loaded = load_model(path)
    assert same_vectors(loaded.model, model)
    assert saved_model_files(path) is not None
    with pytest.raises(ValueError, match="overwrite=True"):
        save_model(model, path)
    save_model(model, path, overwrite=True)
    assert json.loads((path / "model.json").read_text())["format"] == FORMAT_VERSION


def test_extra_files_are_checked(tmp_path):
    model = bpr_model()
    for name, error in (
        (["x"], TypeError),
        ({"../x": print}, ValueError),
        ({".hidden": print}, ValueError),
        ({"model.json": print}, ValueError),
        ({"a.txt": "not callable"}, TypeError),
    ):
        with pytest.raises(error, match="extra_files"):
            save_model(model, tmp_path / "m", extra_files=name)
    with pytest.raises(ValueError, match="did not create"):
        save_model(model, tmp_path / "m", extra_files={"a.txt": lambda p: None})
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


# -- what load_model checks -------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    users, items = id_maps()
    model = bpr_model()
    path = save_model(
        model,
        tmp_path / "m",
        user_map=users,
        item_map=items,
        metadata={"run": 1},
        extra_files={"train_matrix.npz": lambda p: sp.save_npz(p, sp.eye(N_USERS, N_ITEMS, format="csr"))},
    )
    return path, model


def test_round_trip_keeps_maps_metadata_history_and_extras(saved):
    path, model = saved
    model.history = [{"epoch": 1, "best": True, "val_ndcg@10": 0.25}]
    save_model(model, path, overwrite=True, user_map=id_maps()[0], metadata={"run": 2, "nested": [1, {"a": None}]})
    loaded = load_model(path)
    assert same_vectors(loaded.model, model)
    assert loaded.model.history == model.history
    assert loaded.metadata == {"run": 2, "nested": [1, {"a": None}]}
    assert loaded.user_map == id_maps()[0] and loaded.item_map is None
    assert loaded.directory == path and loaded.extra_files == {}


def _flip_byte(file, offset):
    data = bytearray(file.read_bytes())
    data[offset % len(data)] ^= 0x01
    file.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, file, message",
    [
        ("flip_weights_tail", "weights.safetensors", "SHA-256"),
        ("flip_weights_header", "weights.safetensors", "SHA-256"),
        ("truncate_weights", "weights.safetensors", "bytes"),
        ("empty_weights", "weights.safetensors", "bytes"),
        ("flip_user_map", "user_map.json", "SHA-256"),
        ("flip_extra", "train_matrix.npz", "SHA-256"),
        ("delete_item_map", "item_map.json", "missing"),
        ("short_user_map", "user_map.json", "3 user ids"),
        ("short_item_map", "item_map.json", "ids, the model has"),
        ("not_a_map", "user_map.json", "IdMap"),
        ("truncate_weights_checksum_updated", "weights.safetensors", "safetensors"),
        ("weights_of_another_size", "weights.safetensors", "array"),
    ],
)
def test_damaged_files_are_named(saved, damage, file, message):
    path, _ = saved
    target = path / file
    if damage == "flip_weights_tail":
        _flip_byte(target, -3)
    elif damage == "flip_weights_header":
        _flip_byte(target, 20)
    elif damage in ("truncate_weights", "truncate_weights_checksum_updated"):
        target.write_bytes(target.read_bytes()[:-17])
        if damage.endswith("updated"):
            refresh_checksum(path, file)
    elif damage == "empty_weights":
        target.write_bytes(b"")
    elif damage in ("flip_user_map", "flip_extra"):
        _flip_byte(target, 5)
    elif damage == "delete_item_map":
        target.unlink()
    elif damage == "short_user_map":
        IdMap([1, 2, 3], name="user").save(target)
        refresh_checksum(path, file)
    elif damage == "short_item_map":
        IdMap(["a"], name="item").save(target)
        refresh_checksum(path, file)
    elif damage == "not_a_map":
        target.write_text('{"ids": 5}')
        refresh_checksum(path, file)
    else:  # a different (valid) model's weights with a matching checksum: the manifest must catch it
        other = save_model(BPRMF(N_USERS + 1, N_ITEMS, TrainConfig(dim=4, progress=False)), path.parent / "other")
        shutil.copyfile(other / file, target)
        refresh_checksum(path, file)
    with pytest.raises(ValueError, match=message) as exc:
        load_model(path)
    assert file in str(exc.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("kind"), "missing key 'kind'"),
        (lambda m: m.update(kind=5), "'kind' must be a string"),
        (lambda m: m.update(kind="no-such-kind"), "unknown model kind 'no-such-kind'"),
        (lambda m: m.update(format=99), "unsupported format 99.*newer"),
        (lambda m: m.update(format="2"), "unsupported format"),
        (lambda m: m.update(format=True), "unsupported format"),
        (lambda m: m.update(n_users="7"), "'n_users' must be an integer"),
        (lambda m: m.update(n_users=True), "'n_users' must be an integer"),
        (lambda m: m.update(n_users=-1), "'n_users' must be >= 0"),
        (lambda m: m.update(n_users=N_USERS + 1), "does not fit.*size mismatch"),
        (lambda m: m.update(n_items=N_ITEMS - 1), "does not fit.*size mismatch"),
        (lambda m: m.pop("library"), "not written by mmrec_fast"),
        (lambda m: m.pop("files"), "missing key 'files'"),
        (lambda m: m.update(files=[]), "'files' must be"),
        (lambda m: m["files"].pop("weights.safetensors"), "no weights.safetensors"),
        (lambda m: m["files"].update({"../escape": m["files"]["user_map.json"]}), "bad file name"),
        (lambda m: m["files"].update({"user_map.json": "abc"}), "file entry"),
        (lambda m: m["arrays"]["user_id.weight"].update(shape=[1, 1]), "user_id.weight"),
        (lambda m: m["arrays"]["user_id.weight"].update(dtype="float64"), "user_id.weight"),
        (lambda m: m["arrays"].pop("user_id.weight"), "holds arrays"),
        (lambda m: m.update(config=[1]), "'config' must be an object"),
        (lambda m: m["config"].update(dim=5), "does not fit"),
        (lambda m: m["config"].update(bogus=1), "unknown training option"),
        (lambda m: m.update(blocks=[["id", 0, 1]]), "score blocks"),
        (lambda m: m.update(blocks="id"), "'blocks' must be a list"),
        (lambda m: m.update(history={}), "'history' must be a list"),
        (lambda m: m.update(metadata=[]), "'metadata' must be an object"),
    ],
)
def test_bad_metadata_is_a_value_error_naming_model_json_or_the_file(saved, change, message):
    path, _ = saved
    if "user_id.weight" not in json.loads((path / "model.json").read_text())["arrays"]:
        pytest.skip("the BPR state dict no longer has 'user_id.weight'; update this table's array name")
    rewrite_meta(path, change)
    with pytest.raises(ValueError, match=message) as exc:
        load_model(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    "text, message", [("", "not valid JSON"), ("[1, 2]", "expected a JSON object"), ('{"format": 2', "not valid JSON")]
)
def test_model_json_that_is_not_an_object(saved, text, message):
    path, _ = saved
    (path / "model.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_model(path)
    (path / "model.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="model.json: not UTF-8"):
        load_model(path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ValueError, match="not a saved model"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="not a saved model"):
        load_model(tmp_path / "missing")
    with pytest.raises(TypeError, match="directory"):
        load_model(3)


# -- the save registry ------------------------------------------------------------------------------


def test_registered_kind_round_trips_bit_exact(tmp_path):
    rng = np.random.default_rng(5)
    model = tiny_model(rng)
    model.history = [{"epoch": 1, "loss": 0.5}]
    users, items = id_maps()
    path = save_model(model, tmp_path / "tiny", user_map=users, item_map=items, metadata={"who": "test"})
    loaded = load_model(path)
    assert type(loaded.model) is TinyModel
    assert same_vectors(loaded.model, model)
    assert loaded.model.params == model.params
    assert loaded.model.history == model.history and loaded.metadata == {"who": "test"}
    assert loaded.user_map == users and loaded.item_map == items
    assert set(loaded.model.extras) == set(model.extras)
    for name, original in model.extras.items():
        got = loaded.model.extras[name]
        assert got.shape == original.shape and got.dtype == original.dtype.newbyteorder("="), name
        assert np.array_equal(got, original, equal_nan=got.dtype.kind == "f"), name
        assert got.tobytes() == np.ascontiguousarray(original).astype(got.dtype).tobytes(), name  # bit-exact
    assert np.signbit(loaded.model.extras["specials"][3])


def test_registry_records_kinds_and_refuses_duplicates():
    kinds = models_base.registered_kinds()
    assert kinds["test-tiny-io"] is TinyModel and kinds["bpr"] is BPRMF and kinds["content"] is ContentProfile
    assert InheritsKind not in kinds.values()
    assert models_base.model_class("test-tiny-io") is TinyModel
    with pytest.raises(ValueError, match="unknown model kind 'nope'"):
        models_base.model_class("nope")
    with pytest.raises(TypeError, match="already the kind of .*TinyModel"):
        type("Impostor", (TinyModel,), {"kind": "test-tiny-io", "__module__": "elsewhere"})
    with pytest.raises(TypeError, match="non-empty string"):
        type("Nameless", (TinyModel,), {"kind": "", "__module__": "elsewhere"})
    assert models_base.registered_kinds()["test-tiny-io"] is TinyModel


def test_redefining_the_same_class_replaces_its_entry():
    def define():
        class Redefined(TinyModel):
            kind = "test-redefined-io"

        return Redefined

    first, second = define(), define()  # same module and qualified name: a re-run, not a clash
    assert first is not second and models_base.registered_kinds()["test-redefined-io"] is second


def test_protocol_errors(tmp_path):
    rng = np.random.default_rng(1)
    base = tiny_model(rng)
    with pytest.raises(ValueError, match="does not implement state"):
        save_model(NoStateModel(base._u, base._i, {}, {}), tmp_path / "a")
    with pytest.raises(ValueError, match="registered to TinyModel"):
        save_model(InheritsKind(base._u, base._i, {}, {}), tmp_path / "b")
    with pytest.raises(TypeError, match="array 'bad'"):
        save_model(TinyModel(base._u, base._i, {"bad": np.array(["s"], dtype=object)}, {}), tmp_path / "c")
    with pytest.raises(TypeError, match="array 'bad'"):
        save_model(TinyModel(base._u, base._i, {"bad": [1, 2]}, {}), tmp_path / "d")
    with pytest.raises(TypeError, match="plain JSON"):
        save_model(TinyModel(base._u, base._i, {}, {"x": object()}), tmp_path / "e")
    with pytest.raises(TypeError, match="model: expected a Recommender"):
        save_model("not a model", tmp_path / "f")
    assert list(tmp_path.iterdir()) == [], "failed saves must leave nothing behind"

    path = save_model(base, tmp_path / "ok")
    # from_state that cannot rebuild from the saved state: a ValueError naming the directory.
    rewrite_meta(path, lambda m: m.update(kind="test-no-state-io"))
    with pytest.raises(ValueError, match="does not implement from_state"):
        load_model(path)
    rewrite_meta(path, lambda m: m.update(kind="test-tiny-io", params=None))
    with pytest.raises(ValueError, match="'params' must be an object"):
        load_model(path)
    # The rebuilt model is cross-checked against the metadata (sizes, score blocks).
    rewrite_meta(path, lambda m: m.update(params={}, n_users=N_USERS + 1))
    with pytest.raises(ValueError, match=f"weights hold {N_USERS} users, model.json says {N_USERS + 1}"):
        load_model(path)
    rewrite_meta(path, lambda m: m.update(n_users=N_USERS, blocks=[["id", 0, 4]]))
    with pytest.raises(ValueError, match="score blocks"):
        load_model(path)
    rewrite_meta(path, lambda m: m.update(blocks=[["id", 0, 3], ["bias", 3, 4]]))
    assert same_vectors(load_model(path).model, base)


def test_builtin_content_model_cross_checks(tmp_path):
    rng = np.random.default_rng(2)
    model = ContentProfile(rng.standard_normal((N_ITEMS, 3)).astype(np.float32)).fit(
        sp.random(N_USERS, N_ITEMS, density=0.3, format="csr", random_state=2)
    )
    path = save_model(model, tmp_path / "c")
    assert same_vectors(load_model(path).model, model)
    rewrite_meta(path, lambda m: m.update(use_values="yes"))
    with pytest.raises(ValueError, match="'use_values' must be true or false"):
        load_model(path)


def test_warning_free_load_of_a_current_model(saved):
    path, model = saved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same_vectors(load_model(path).model, model)
    assert os.path.isfile(path / "model.json")


def _pipeline_models():
    """The other kinds of the library, tiny, built directly (each saves through state()/from_state())."""
    import mmrec_fast.models as models

    features = np.random.default_rng(4).standard_normal((N_ITEMS, 5)).astype(np.float32)
    return {
        "ease": lambda: models.EASE(N_USERS, N_ITEMS),
        "ials": lambda: models.IALS(N_USERS, N_ITEMS, dim=3, epochs=2),
        "ials-content": lambda: models.ContentIALS(N_USERS, N_ITEMS, features, dim=3, epochs=2),
        "mostpop": lambda: models.MostPop(N_USERS, N_ITEMS),
    }


@pytest.mark.parametrize("kind", ["ease", "ials", "ials-content", "mostpop"])
def test_library_kinds_round_trip_through_the_protocol(tmp_path, kind):
    if kind not in models_base.registered_kinds():
        pytest.skip(f"model kind {kind!r} is not in this build")
    train = sp.random(N_USERS, N_ITEMS, density=0.4, format="csr", random_state=3)
    train.data[:] = 1.0
    model = _pipeline_models()[kind]().fit(train)
    assert model.kind == kind
    path = save_model(model, tmp_path / kind, user_map=id_maps()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(path)
    assert type(loaded.model) is type(model) and same_vectors(loaded.model, model)
    assert loaded.model.blocks() == model.blocks() and loaded.user_map == id_maps()[0]
    meta = json.loads((path / "model.json").read_text())
    assert "params" in meta and set(meta["arrays"]) == set(model.state()[0])


def test_a_foreign_directory_is_refused_without_walking_it(tmp_path, monkeypatch):
    """`--out ~` must fail at once, not after reading every file under the home directory."""
    (tmp_path / "home" / "deep" / "tree").mkdir(parents=True)
    (tmp_path / "home" / "deep" / "tree" / "file").write_text("x")

    def no_walk(directory):
        raise AssertionError("walked a directory that is not a saved model")

    monkeypatch.setattr(_outputs, "list_files", no_walk)
    with pytest.raises(ValueError, match="not a saved model.*'deep'"):
        save_model(bpr_model(), tmp_path / "home")
