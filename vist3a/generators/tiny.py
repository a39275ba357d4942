"""In-process pieces for tiny test pipelines: a word-level tokenizer that needs no files and no hub."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WORDS = ("a", "an", "the", "of", "on", "in", "cat", "dog", "red", "blue", "green", "scene", "room", "car", "camera", "orbit")
SPECIALS = ("<pad>", "</s>", "<unk>", "<s>")


def tiny_tokenizer(words: Sequence[str] = WORDS) -> Any:
    """A ``PreTrainedTokenizerFast`` over ``words`` (ids: pad 0, eos 1, unk 2, bos 3) that appends ``</s>``.

    Whitespace pre-tokenisation; unknown words map to ``<unk>``. It saves and reloads with ``save_pretrained``.
    """
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((*SPECIALS, *words))}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>")


def vocab_size(words: Sequence[str] = WORDS) -> int:
    return len(SPECIALS) + len(words)


def eval_mode(pipe: Any) -> Any:
    """Put every model of a freshly built pipeline in eval mode (no dropout), as ``from_pretrained`` does."""
    for module in pipe.components.values():
        if hasattr(module, "eval") and hasattr(module, "parameters"):
            module.eval()
    return pipe
