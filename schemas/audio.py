"""Audio constants shared by the producer, the decoder and the aggregation."""

from typing import Final

#: Codecs a producer may declare in the ``codec`` header.
CODEC_PCM_S16LE: Final = "pcm_s16le"  # 16-bit signed little-endian linear PCM, any listed rate
CODEC_MULAW: Final = "pcm_mulaw"  # ITU-T G.711 mu-law, 8 bit per sample, telephony (8 kHz)
CODEC_ALAW: Final = "pcm_alaw"  # ITU-T G.711 A-law, 8 bit per sample, telephony (8 kHz)
CODECS: Final = (CODEC_PCM_S16LE, CODEC_MULAW, CODEC_ALAW)

#: Bytes per sample of each codec on the wire.
BYTES_PER_SAMPLE: Final = {CODEC_PCM_S16LE: 2, CODEC_MULAW: 1, CODEC_ALAW: 1}

#: G.711 is defined at 8 kHz only; linear PCM at the usual telephony/wideband rates.
G711_SAMPLE_RATE_HZ: Final = 8000
PCM_SAMPLE_RATES_HZ: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

#: Rate the pipeline resamples to before speech processing (Whisper/Qwen3-ASR take 16 kHz).
PIPELINE_SAMPLE_RATE_HZ: Final = 16000

#: Channel roles. ``mixed`` is a mono mix of both parties (no per-party metrics possible).
ROLE_AGENT: Final = "agent"
ROLE_CUSTOMER: Final = "customer"
ROLE_MIXED: Final = "mixed"
ROLES: Final = (ROLE_AGENT, ROLE_CUSTOMER, ROLE_MIXED)

#: 100 ms chunks: small enough for live latency, large enough that per-message overhead
#: (~100 B of headers) stays < 4 % of a 16 kHz s16 payload (3,200 B).
DEFAULT_CHUNK_MS: Final = 100

#: Upper bound on one chunk's duration: 10 s. Larger payloads are a producer bug (or an attack);
#: they would also break Kafka's default 1 MiB message limit at 48 kHz stereo.
MAX_CHUNK_MS: Final = 10_000
