"""The streaming job without ASR needs only the base install: the QA extras load lazily."""

from __future__ import annotations

import subprocess
import sys


def test_the_job_imports_without_the_qa_extra() -> None:
    # jieba, great-expectations and vaderSentiment come with the [qa] extra; mark them missing
    # (pydantic is in the base install with pyiceberg, rapidfuzz for domain terms).
    code = (
        "import sys\n"
        "for m in ('jieba', 'great_expectations', 'vaderSentiment'): sys.modules[m] = None\n"
        "import beam_jobs.pipeline, beam_jobs.config, transforms.core.lifecycle\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
