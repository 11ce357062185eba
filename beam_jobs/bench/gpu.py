"""``python -m beam_jobs.bench.gpu``: Qwen3-ASR-1.7B architecture throughput on a GPU.

Random weights from the published config (no hub), bf16, a fixed number of generated tokens
per utterance (``min_new_tokens = max_new_tokens``: random weights would stop at random), the
same processor calls as the transformers handler (``apply_transcription_request`` →
``generate``), batch sizes 1–64 over the same utterances. Prints audio-seconds per second
(RTFx) beside the published anchor: Open ASR Leaderboard, Qwen3-ASR-1.7B with the
transformers backend, batch 64, H200: RTFx 148. Needs only torch and transformers (the
device machine has no Beam).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

ANCHOR_RTFX = 148.0


def main(argv: list[str] | None = None) -> int:
    import torch

    from beam_jobs.services.random_models import random_qwen3_asr

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--utterances", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per utterance")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-sizes", default="1,4,16,32,64")
    ap.add_argument("--size", default="1.7b", choices=["tiny", "1.7b"])
    args = ap.parse_args(argv)
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    t0 = time.perf_counter()
    model, processor = random_qwen3_asr(args.size, device="cuda")
    model = model.to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"{torch.cuda.get_device_name()}: Qwen3-ASR {args.size} ({params:.2f} B params, "
          f"random weights) built in {time.perf_counter() - t0:.0f} s, bf16")  # fmt: skip
    rng = np.random.default_rng(0)
    audio = [
        (0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32)
        for _ in range(args.utterances)
    ]
    total_audio_s = args.seconds * len(audio)
    gen = {
        "max_new_tokens": args.max_new_tokens,
        "min_new_tokens": args.max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
    }

    def run(batch: list[np.ndarray]) -> None:
        inputs = processor.apply_transcription_request(audio=batch, language=["en"] * len(batch))
        inputs = {
            k: (v.to("cuda", torch.bfloat16) if v.is_floating_point() else v.to("cuda"))
            for k, v in inputs.items()
            if hasattr(v, "to")
        }
        with torch.inference_mode():
            model.generate(**inputs, **gen)

    print(f"{len(audio)} utterances x {args.seconds:.0f} s, {args.max_new_tokens} tokens each")
    print(f"{'batch':>6}{'s':>9}{'RTFx':>9}{'vs batch 1':>12}{'vs anchor':>11}{'GPU GiB':>9}")
    base = None
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        run(audio[:bs])  # warm-up at this shape
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for i in range(0, len(audio), bs):
            run(audio[i : i + bs])
        torch.cuda.synchronize()
        secs = time.perf_counter() - t
        rtfx = total_audio_s / secs
        base = base or rtfx
        mem = torch.cuda.max_memory_allocated() / 2**30
        print(f"{bs:>6}{secs:>9.1f}{rtfx:>9.0f}{rtfx / base:>12.2f}{rtfx / ANCHOR_RTFX:>11.2f}"
              f"{mem:>9.1f}")  # fmt: skip
    print(f"\nanchor: RTFx {ANCHOR_RTFX:.0f} (Open ASR Leaderboard, transformers, batch 64, "
          "H200; real weights and transcripts: its tokens per audio second differ)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
