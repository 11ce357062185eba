"""The ASR stage, one module per layer (import-linter keeps them in order):

- ``transcribe``: the ``Transcribe`` composite; ``model_handler`` picks the backend.
- ``whisper``: faster-whisper (CTranslate2 ``model.bin``), the embedded default on a fresh
  machine: int8 on CPU, float16 on CUDA.
- ``hf``: transformers (``config.json`` with ``model_type`` ``qwen3_asr`` or ``whisper``):
  Qwen3-ASR (production: Qwen3-ASR-1.7B, ``-hf`` layout) and Whisper. fp32 on CPU; bf16 (fp16
  where bf16 is missing) on CUDA.
- ``options``: what both backends share: ``AsrOptions``, model detection, the language table,
  batching helpers.
"""
