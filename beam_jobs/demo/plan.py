"""How many of the demo's calls run at once: as many as this machine transcribes in real time.

Before the job starts, the demo measures the embedded backend batched by hand on its own calls'
speech (``beam_jobs.ceiling``): that rate over the speech a call holds per second is the
ASR-bound ceiling in calls. The streaming job holds a share of it (``HELD_SHARE_OF_CEILING``,
measured by ``callqa bench capacity``). The demo runs that many calls at once, the others
after them, or says that the machine cannot keep up with one call and by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from schemas.audio import PIPELINE_SAMPLE_RATE_HZ
from schemas.records import Utterance
from transforms.core.audio import encode, resample
from transforms.io.recordings import CallAudio

#: The share of the ASR-bound ceiling (in calls) the streaming job keeps up with, default
#: options, in ``callqa bench capacity`` on this project's 2-core machine (docs/benchmarks.md,
#: capacity, 2026-12-05): its lag stayed flat at 2 calls of a 7.4-call ceiling and grew at 3.
#: The rest of the CPU goes to Prism, Kafka, segmentation, validation and the data plane.
HELD_SHARE_OF_CEILING: Final = 0.25
#: Speech measured at start: enough for a stable rate, short enough not to delay the demo.
MEASURE_SPEECH_S: Final = 30.0


class DemoPlan(NamedTuple):
    speech_rate: float  # s of speech per s, the backend batched by hand on this machine
    speech_per_call_s: float  # s of speech (both channels) per s of call
    concurrent: int  # calls at once; 0: not even one call keeps up

    @property
    def ceiling_calls(self) -> float:
        return self.speech_rate / self.speech_per_call_s

    @property
    def held_calls(self) -> float:
        return HELD_SHARE_OF_CEILING * self.ceiling_calls

    def summary(self) -> str:
        head = (
            f"ASR: {self.speech_rate:.2f} s of speech per s batched by hand; a call holds "
            f"{self.speech_per_call_s:.2f} s of speech per s → ceiling {self.ceiling_calls:.1f} "
            f"calls, of which the job holds about {self.held_calls:.1f} "
            f"({HELD_SHARE_OF_CEILING:.0%}, bench capacity)"
        )
        if self.concurrent:
            return f"{head}: {self.concurrent} at a time"
        return (
            f"{head}: this machine is too slow to keep up with even one call in real time "
            f"(it needs {1 / self.held_calls:.1f}x the speed). The calls run one at a time and "
            "their transcripts will come late."
        )


def plan(speech_rate: float, speech_per_call_s: float, calls: int) -> DemoPlan:
    held = HELD_SHARE_OF_CEILING * speech_rate / max(speech_per_call_s, 1e-9)
    return DemoPlan(speech_rate, speech_per_call_s, min(calls, int(held)))


def start_times_ms(durations_s: Sequence[float], concurrent: int, first_ms: int) -> list[int]:
    """Each call's start: at most ``concurrent`` (at least 1) at once, starts 1.5 s apart, and a
    call that waits for a free slot starts 1 s after the call it replaces ended."""
    slots = max(1, concurrent)
    starts: list[int] = []
    for i, _ in enumerate(durations_s):
        if i < slots:
            starts.append(first_ms + 1500 * i)
        else:
            ended = starts[i - slots] + int(1000 * durations_s[i - slots])
            starts.append(max(ended + 1000, starts[-1] + 1500))
    return starts


def turn_utterances(
    audio: CallAudio, turns: Sequence[tuple[str, float, float]], max_speech_s: float
) -> list[Utterance]:
    """The scripted turns ``(role, start_s, end_s)`` of a call as utterances at 16 kHz, up to
    ``max_speech_s`` of speech."""
    out: list[Utterance] = []
    total = 0.0
    rate = PIPELINE_SAMPLE_RATE_HZ
    channels = {r: resample(x, audio.sample_rate_hz, rate) for r, x in audio.channels.items()}
    for role, start_s, end_s in turns:
        if total >= max_speech_s:
            break
        x = channels[role][int(start_s * rate) : int(end_s * rate)]
        out.append(
            Utterance(audio.call_id, role, int(1000 * start_s), int(1000 * end_s), rate,
                      encode(x, "pcm_s16le"), audio.language_hint)
        )  # fmt: skip
        total += end_s - start_s
    return out
