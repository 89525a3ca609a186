"""Catalogue-level encoding: one block per modality, by the direct route or the "to text" route.

Direct route (``route="direct"``)
    each modality keeps its own encoder's space (text 384-d, image 1,280-d, audio 384-d with the
    defaults); :func:`~mmrec_fast.encoders.fuse` concatenates the blocks.
"To text" route (``route="text"``)
    an image becomes text -- its top ImageNet labels ("a photo of daisy, bee") or, when a local
    captioning model is given, a caption -- and a clip becomes its Whisper transcript; the text
    encoder then embeds everything, so all blocks live in one space (and can be averaged or
    compared across modalities, e.g. a text query against image-only items).

Items are aligned lists: ``texts[i]``, ``images[i]``, ``audio[i]`` describe item ``i``; ``None``
means the item has no such content (a *missing* modality, not an error). Content that fails to
decode follows ``on_error``; under ``"skip"``/``"zero"`` it is reported in the block's ``errors``
and the item counts as missing for that modality.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._optional import require
from ._offline import offline_mode, resolve_model_dir
from .base import check_on_error, check_positive_int, map_with_policy, resolve_device, torch_threads
from .fusion import ModalityBlock

__all__ = ["encode_items", "image_to_text", "audio_to_text", "ImageCaptioner"]


def _label_phrase(labels: list, min_prob: float, template: str) -> str:
    # ImageNet descriptions list synonyms ("bell cote, bell cot"): keep the first name of each.
    names = [name.split(",")[0].strip() for name, p in labels if p >= min_prob] or [labels[0][0].split(",")[0].strip()]
    return template.format(labels=", ".join(names))


def image_to_text(
    images: Sequence,
    image_encoder=None,
    *,
    captioner=None,
    top_k: int = 3,
    min_prob: float = 0.05,
    template: str = "a photo of {labels}",
    ids=None,
    on_error: str = "raise",
    return_errors: bool = False,
):
    """Describe images in words: a caption (``captioner``) or their top ImageNet labels.

    Parameters
    ----------
    images : sequence
        Image items (paths, bytes, PIL images, arrays).
    image_encoder : ImageEncoder, optional
        The default EfficientNet-Lite0 encoder (for labels); built when needed.
    captioner : ImageCaptioner, optional
        A local captioning model; when given, captions replace labels.
    top_k, min_prob : int, float
        Labels kept: the ``top_k`` most probable with probability >= ``min_prob`` (at least one).
    template : str
        Sentence around the labels (``{labels}`` is replaced).
    ids, on_error
        Error report ids and policy; failed items give ``None``.
    return_errors : bool
        Also return the list of :class:`~mmrec_fast.encoders.ItemError`.

    Returns
    -------
    list of str (or None), and the errors when ``return_errors``
    """
    if captioner is not None:
        out, errors = captioner.caption(images, ids=ids, on_error=on_error, return_errors=True)
        return (out, errors) if return_errors else out
    if "{labels}" not in template:
        raise ValueError("template: must contain '{labels}'")
    if image_encoder is None:
        from .image import ImageEncoder

        image_encoder = ImageEncoder()
    top_k = check_positive_int(top_k, "top_k")

    def one(img):
        return _label_phrase(image_encoder.predict_labels([img], top_k=top_k)[0], min_prob, template)

    out, errors = map_with_policy(one, images, ids=ids, policy=on_error, name=f"{image_encoder.name} labels")
    return (out, errors) if return_errors else out


def audio_to_text(
    clips: Sequence, audio_encoder=None, *, ids=None, on_error: str = "raise", return_errors: bool = False, **kwargs
):
    """Transcribe clips with the Whisper audio encoder (``None`` for failed clips under skip/zero).

    ``kwargs`` go to :meth:`AudioEncoder.transcribe` (``language``, ``beam_size``).
    """
    if audio_encoder is None:
        from .audio import AudioEncoder

        audio_encoder = AudioEncoder()
    texts = audio_encoder.transcribe(clips, ids=ids, on_error="skip" if on_error != "raise" else "raise", **kwargs)
    return (texts, audio_encoder.last_transcribe_errors) if return_errors else texts


class ImageCaptioner:
    """Caption images with a local transformers image-to-text model (BLIP, GIT, ViT-GPT2 ...).

    Parameters
    ----------
    model_dir : str or os.PathLike
        Local model directory (``config.json``, weights, processor and tokenizer files).
    device, batch_size, num_threads : see :class:`~mmrec_fast.encoders.TextEncoder`.
    max_new_tokens : int
        Caption length limit.
    """

    @offline_mode()  # the Hugging Face offline switches hold while the model loads, then are restored
    def __init__(
        self, model_dir, *, device="cpu", batch_size: int = 8, num_threads: int | None = None, max_new_tokens: int = 30
    ):
        path = resolve_model_dir(model_dir, required=("config.json",))
        self.name = path.name
        self.device = resolve_device(device)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_threads = check_positive_int(num_threads, "num_threads", allow_none=True)
        self.max_new_tokens = check_positive_int(max_new_tokens, "max_new_tokens")
        transformers = require("transformers", extra="encoders", feature="ImageCaptioner")
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except Exception:  # noqa: BLE001 - older checkpoints: separate image processor + tokenizer
            self.processor = None
        if self.processor is None or not hasattr(self.processor, "batch_decode"):
            self.image_processor = transformers.AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        else:
            self.image_processor, self.tokenizer = self.processor, self.processor
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        if config.model_type == "vision-encoder-decoder":
            model = transformers.VisionEncoderDecoderModel.from_pretrained(str(path), local_files_only=True)
        else:
            auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
            model = auto.from_pretrained(str(path), local_files_only=True)
        self.model = model.to(self.device).eval()

    def caption(self, images: Sequence, *, ids=None, on_error: str = "raise", return_errors: bool = False):
        """One caption per image (``None`` for images that failed under skip/zero).

        With ``return_errors`` also the list of :class:`~mmrec_fast.encoders.ItemError`.
        """
        import torch

        from ..preprocess.image import load_image

        check_on_error(on_error)
        decoded, errs = map_with_policy(
            lambda im: load_image(im).convert("RGB"), images, ids=ids, policy=on_error, name=f"{self.name} caption"
        )
        good = [i for i, im in enumerate(decoded) if im is not None]
        out: list = [None] * len(decoded)
        with torch_threads(self.num_threads), torch.inference_mode():
            for start in range(0, len(good), self.batch_size):
                idx = good[start : start + self.batch_size]
                inputs = self.image_processor(images=[decoded[i] for i in idx], return_tensors="pt")
                inputs = {k: v.to(self.device) for k, v in inputs.items()}
                tokens = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
                texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
                for i, t in zip(idx, texts):
                    out[i] = t.strip()
        return (out, errs) if return_errors else out


def _aligned(name: str, values, n: int | None):
    if values is None:
        return None, n
    values = list(values)
    if n is not None and len(values) != n:
        raise ValueError(f"{name}: has {len(values)} entries but the other modalities have {n} items")
    return values, len(values)


def encode_items(
    *,
    texts: Sequence | None = None,
    images: Sequence | None = None,
    audio: Sequence | None = None,
    route: str = "direct",
    text_encoder=None,
    image_encoder=None,
    audio_encoder=None,
    captioner=None,
    ids: Sequence | None = None,
    on_error: str = "zero",
    label_top_k: int = 3,
) -> dict:
    """Encode a catalogue's content into one :class:`ModalityBlock` per modality.

    Parameters
    ----------
    texts, images, audio : sequence, optional
        Aligned per-item content; ``None`` entries mark items without that modality.
    route : {"direct", "text"}
        ``"direct"``: each modality's own encoder; ``"text"``: images and audio become text first and
        the text encoder embeds every block (one shared space).
    text_encoder, image_encoder, audio_encoder : Encoder, optional
        Encoders to use (defaults built on demand from the packaged models).
    captioner : ImageCaptioner, optional
        For ``route="text"``: caption images instead of labelling them.
    ids : sequence, optional
        Item ids for the error reports (default: positions).
    on_error : {"raise", "skip", "zero"}
        ``"raise"`` stops at the first bad item; ``"skip"`` and ``"zero"`` both mark it missing in its
        block (the block keeps one row per item either way) and list it in ``block.errors``.
    label_top_k : int
        ImageNet labels per image in the "to text" route.

    Returns
    -------
    dict
        Modality name (``"text"``, ``"image"``, ``"audio"``) -> ModalityBlock, for modalities given.
    """
    if route not in ("direct", "text"):
        raise ValueError(f"route: must be 'direct' or 'text', got {route!r}")
    check_on_error(on_error)
    n = None
    texts, n = _aligned("texts", texts, n)
    images, n = _aligned("images", images, n)
    audio, n = _aligned("audio", audio, n)
    if n is None:
        raise ValueError("texts, images, audio: give at least one modality")
    ids, _ = _aligned("ids", ids, n) if ids is not None else (list(range(n)), n)
    policy = "raise" if on_error == "raise" else "skip"

    def text_enc():
        nonlocal text_encoder
        if text_encoder is None:
            from .text import TextEncoder

            text_encoder = TextEncoder()
        return text_encoder

    def run(encoder, values, as_text=None) -> ModalityBlock:
        idx = [i for i, v in enumerate(values) if v is not None]
        emb = np.zeros((n, encoder.dim), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        errors: list = []
        inter = None
        sub_ids = [ids[i] for i in idx]
        items = [values[i] for i in idx]
        if as_text is not None:  # the "to text" route: first words, then the text encoder
            from .base import ItemError

            words, conv_errors = as_text(items, sub_ids)
            inter = [None] * n
            for i, w in zip(idx, words):
                inter[i] = w
            errors += [e._replace(index=idx[e.index]) for e in conv_errors]
            failed_conv = {e.index for e in conv_errors}
            # A clip that decodes but yields no words (music, noise) is missing for this route.
            errors += [
                ItemError(sub_ids[k], idx[k], "to_text", "ValueError", "no words (empty transcript or caption)")
                for k, w in enumerate(words)
                if not w and k not in failed_conv
            ]
            keep = [k for k, w in enumerate(words) if w]
            idx, sub_ids, items = [idx[k] for k in keep], [sub_ids[k] for k in keep], [words[k] for k in keep]
        if items:
            res = encoder.encode_with_report(items, ids=sub_ids, on_error=policy)
            rows = [idx[k] for k in np.flatnonzero(res.ok)]
            emb[rows] = res.embeddings
            present[rows] = True
            errors += [e._replace(index=idx[e.index]) for e in res.errors]
        errors.sort(key=lambda e: e.index)
        return ModalityBlock(emb, present, inter, errors)

    blocks = {}
    if texts is not None:
        blocks["text"] = run(text_enc(), texts)
    if images is not None:
        if route == "direct":
            if image_encoder is None:
                from .image import ImageEncoder

                image_encoder = ImageEncoder()
            blocks["image"] = run(image_encoder, images)
        else:
            if captioner is None and image_encoder is None:
                from .image import ImageEncoder

                image_encoder = ImageEncoder()
            blocks["image"] = run(
                text_enc(),
                images,
                lambda items, sid: image_to_text(
                    items,
                    image_encoder,
                    captioner=captioner,
                    top_k=label_top_k,
                    ids=sid,
                    on_error=policy,
                    return_errors=True,
                ),
            )
    if audio is not None:
        if audio_encoder is None:
            from .audio import AudioEncoder

            audio_encoder = AudioEncoder()
        if route == "direct":
            blocks["audio"] = run(audio_encoder, audio)
        else:
            blocks["audio"] = run(
                text_enc(),
                audio,
                lambda items, sid: audio_to_text(items, audio_encoder, ids=sid, on_error=policy, return_errors=True),
            )
    return blocks
