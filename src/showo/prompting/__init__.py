"""Show-o's token layout, sequence builders and omni-attention masks."""
from .masks import (
    BLOCKED,
    causal_mask,
    left_pad_ids,
    lm_mask,
    lvg_mask,
    lvg_v2_mask,
    mmu_clip_mask,
    mmu_mask,
    pad_after_prefix,
    pad_left,
    positions_left_padded,
    t2i_mask,
    to_additive,
)
from .sequences import (
    CLIP_NUM_IMAGE_TOKENS,
    IGNORE_INDEX,
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_LEN_PHI,
    PromptBatch,
    clip_image_slot,
    clip_question_text,
    dropout_mask,
    lm_sequence,
    lvg_gen_sequence,
    lvg_sequence,
    mmu_clip_prompt_ids,
    mmu_prompt_ids,
    mmu_question_text,
    mmu_sequence,
    t2i_gen_sequence,
    t2i_sequence,
    t2v_gen_sequence,
    t2v_sequence,
    text_condition,
)
from .vocab import NUM_NEW_SPECIAL_TOKENS, PAD_TOKEN, TASK_TOKENS, Vocabulary

__all__ = [
    "BLOCKED", "CLIP_NUM_IMAGE_TOKENS", "IGNORE_INDEX", "NUM_NEW_SPECIAL_TOKENS", "PAD_TOKEN", "SYSTEM_PROMPT",
    "SYSTEM_PROMPT_LEN_PHI", "TASK_TOKENS", "PromptBatch", "Vocabulary", "causal_mask", "clip_image_slot",
    "clip_question_text", "dropout_mask", "left_pad_ids", "lm_mask", "lm_sequence", "lvg_gen_sequence", "lvg_mask",
    "lvg_sequence", "lvg_v2_mask", "mmu_clip_mask", "mmu_clip_prompt_ids", "mmu_mask", "mmu_prompt_ids",
    "mmu_question_text", "mmu_sequence", "pad_after_prefix", "pad_left", "positions_left_padded", "t2i_gen_sequence",
    "t2i_mask", "t2i_sequence", "t2v_gen_sequence", "t2v_sequence", "text_condition", "to_additive",
]
