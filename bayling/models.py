"""Tiny random-init Llama models, built locally, for tests, the demo and CPU benchmarks."""

from __future__ import annotations

from pathlib import Path

from bayling.templates import get_template, stop_token_ids
from bayling.tokenizer import load_tokenizer


def build_tiny_llama(
    tokenizer: str,
    out_dir: str | Path,
    *,
    template: str = "bayling",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Save a random-init LlamaForCausalLM + tokenizer (with chat template) as an HF checkpoint dir."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tpl = get_template(template)
    tok = load_tokenizer(tokenizer, tpl)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    stops = stop_token_ids(tok, tpl)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=stops, pad_token_id=tok.pad_token_id, do_sample=False
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
