"""Random-weight ASR models built from configs, offline (no model hub): for tests of the
transformers backend's plumbing and for throughput benchmarks of an architecture.

``tiny`` models have a few thousand parameters and a byte-level tokenizer; ``1.7b`` builds the
Qwen3-ASR-1.7B architecture (its published config sizes) for GPU throughput runs. The weights
are random: the text they produce is noise. Never use them to judge accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, cast

#: Special tokens the Qwen3-ASR processor and chat template use.
_QWEN_SPECIAL: Final = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>",
    "<|audio_pad|>", "<asr_text>", "<timestamp>",
)  # fmt: skip
#: A ChatML template with audio parts, as the Qwen3-ASR -hf checkpoints render conversations.
_QWEN_TEMPLATE: Final = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{%- if m['content'] is string -%}{{ m['content'] }}{%- else -%}"
    "{%- for c in m['content'] -%}"
    "{%- if c['type'] == 'audio' -%}<|audio_start|><|audio_pad|><|audio_end|>"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
SIZES: Final = ("tiny", "1.7b")


def random_qwen3_asr(size: str = "tiny", seed: int = 0, device: str = "cpu") -> tuple[Any, Any]:
    """(model, processor): Qwen3-ASR in the ``-hf`` layout with random weights and a
    byte-level tokenizer, built in memory (on ``device``: the 1.7B one inits fast on a GPU)."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import (
        Qwen2Tokenizer,
        Qwen3ASRConfig,
        Qwen3ASRFeatureExtractor,
        Qwen3ASRForConditionalGeneration,
        Qwen3ASRProcessor,
    )

    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        extra_special_tokens={
            "audio_token": "<|audio_pad|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
        },
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(_QWEN_SPECIAL)})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIAL}
    processor = Qwen3ASRProcessor(
        feature_extractor=Qwen3ASRFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=_QWEN_TEMPLATE,
    )
    token_ids: dict[str, Any] = {
        "audio_token_id": ids["<|audio_pad|>"],
        "timestamp_token_id": ids["<timestamp>"],
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|endoftext|>"], ids["<|im_end|>"]],
    }
    if size == "tiny":
        config = Qwen3ASRConfig(
            audio_config={
                "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
                "d_model": 32, "output_dim": 32, "downsample_hidden_size": 16,
            },
            text_config={
                "model_type": "qwen3", "vocab_size": len(tokenizer), "hidden_size": 32,
                "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 4096,
                "tie_word_embeddings": True,
            },
            **token_ids,
        )  # fmt: skip
    else:
        # The published 1.7B sizes are the config defaults; the vocabulary is padded to the
        # real one so the embedding and LM head cost what they cost in production.
        # The encoder projects to the decoder's width (2048 in the 1.7B).
        config = Qwen3ASRConfig(audio_config={"output_dim": 2048}, **token_ids)
        cast(Any, config.text_config).vocab_size = 151_936
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ASRForConditionalGeneration(config).eval()
    return model, processor


def build_random_qwen3_asr(out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """``random_qwen3_asr`` saved as a model directory (what ``--asr`` takes)."""
    model, processor = random_qwen3_asr(size, seed)
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_random_whisper(out_dir: str | Path, tokenizer_json: str | Path, seed: int = 0) -> Path:
    """A tiny Whisper (transformers layout) with random weights. The tokenizer is the real
    multilingual one (the embedded model's ``tokenizer.json``), so prompts, language tokens and
    language identification go through the real vocabulary."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    tokenizer = WhisperTokenizer(tokenizer_file=str(tokenizer_json))
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer
    )

    def tid(token: str) -> int:
        return int(cast(int, tokenizer.convert_tokens_to_ids(token)))

    sot, eot = tid("<|startoftranscript|>"), tid("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=51_865, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=448, decoder_start_token_id=sot, eos_token_id=eot,
        pad_token_id=eot, bos_token_id=eot,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    languages = ("en", "zh", "de", "fr", "es", "ja", "ko", "ru", "th", "yue")
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_length=448, is_multilingual=True,
        lang_to_id={f"<|{lang}|>": tid(f"<|{lang}|>") for lang in languages},
        task_to_id={"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")},
        no_timestamps_token_id=tid("<|notimestamps|>"), suppress_tokens=[],
        begin_suppress_tokens=[220, eot],
    )  # fmt: skip
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
