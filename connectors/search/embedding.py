"""The embedding model: wordllama's `l2_supercat` at 256 dimensions, whose weights and
tokenizer ship inside the `wordllama` wheel. Loaded offline (never a download), once per
process, on first use, by whichever thread gets there first."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wordllama.inference import WordLlamaInference

MODEL = "wordllama/l2_supercat-256"
DIMENSIONS = 256

_lock = threading.Lock()
_model: WordLlamaInference | None = None


class ModelUnavailable(RuntimeError):
    """The model's files are not in the installed package (a broken install)."""


def model() -> WordLlamaInference:
    """The process's model, loaded on first use from the package's own files."""
    global _model
    if _model is not None:
        return _model
    with _lock:
        if _model is None:
            _model = _load()
    return _model


def _load() -> WordLlamaInference:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # wordllama.inference calls logging.basicConfig(level=INFO) at import: a library
    # must not configure the process's logging, so what it changed is put back.
    import wordllama
    from wordllama import WordLlama

    root.handlers[:] = handlers
    root.setLevel(level)
    package = Path(wordllama.__file__).parent
    try:
        return WordLlama.load(
            config="l2_supercat", dim=DIMENSIONS, cache_dir=package, disable_download=True
        )
    except FileNotFoundError as err:
        raise ModelUnavailable(f"the search model's files are missing: {err}") from err


def embed(texts: list[str]) -> np.ndarray:
    """Unit vectors (len(texts) × DIMENSIONS, float32); an empty text is a zero vector."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors = np.asarray(model().embed(texts, norm=False), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors
