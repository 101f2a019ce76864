"""Conversations of real people with known turns, made from recordings Debian packages ship: Asterisk's voice
prompts, each language recorded by a different professional speaker (Allison en/es, June fr-CA, Carlo it,
the Russian voice, Armelle fr, the Colombian Spanish voice). ``scripts/setup.sh`` installs them as root.

A conversation takes turns between 2-4 speakers (a few prompts per turn), with pauses and, where asked,
0.5-2 s overlaps; the truth is each prompt's speech extent (its leading and trailing silence trimmed). The
conditions a user's recordings come in: clean 16 kHz, telephone (8 kHz G.711 mu-law round trip), noise at
10 dB SNR. ``truth`` turns are ``(start, end, speaker)`` in seconds.

    from realspeech import speakers, conversation
    y, sr, truth = conversation(speakers()[:3], turns=12, seed=0, overlap=0.2, condition="telephone")
"""

from __future__ import annotations

import functools
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOUNDS = "/usr/share/asterisk/sounds"
SR = 16000
# folder (or glob) per real speaker; en_US and es_MX are both Allison Smith: one speaker, English prompts only
VOICES = {
    "allison": f"{SOUNDS}/en_US_f_Allison/*.wav",
    "june": f"{SOUNDS}/fr_CA_f_June/*.wav",
    "carlo": f"{SOUNDS}/it_IT_m_Carlo/*.wav",
    "irina": f"{SOUNDS}/ru_RU_f_IvrvoiceRU/*.wav",
    "armelle": "fr-armelle",  # raw GSM prompts of asterisk-prompt-fr-armelle
    "colombia": "es-co",  # raw GSM prompts of asterisk-prompt-es-co
}


@dataclass
class Voice:
    name: str
    prompts: list[str]


def _package_files(package: str, suffix: str = ".gsm") -> list[str]:
    listing = f"/var/lib/dpkg/info/asterisk-prompt-{package}.list"
    if not os.path.exists(listing):
        return []
    with open(listing) as f:
        return sorted(line.strip() for line in f if line.strip().endswith(suffix))


def speakers(minimum_prompts: int = 40) -> list[Voice]:
    """The real speakers installed here (those with at least ``minimum_prompts`` prompts)."""
    found = []
    for name, where in VOICES.items():
        files = sorted(glob.glob(where)) if where.startswith("/") else _package_files(where)
        files = [f for f in files if os.path.getsize(f) > (1650 if f.endswith(".gsm") else 16000)]  # >= ~1 s
        if len(files) >= minimum_prompts:
            found.append(Voice(name, files))
    return found


def read_prompt(path: str) -> np.ndarray:
    """A prompt at 16 kHz mono, its leading and trailing silence cut (so the truth is its speech)."""
    if path.endswith(".gsm"):
        import av

        with av.open(path, format="gsm") as container:
            frames = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(audio=0)]
        y = np.concatenate(frames) / 32768.0 if frames and frames[0].dtype.kind == "i" else np.concatenate(frames)
        rate = 8000
    else:
        import soundfile as sf

        y, rate = sf.read(path, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
    from audioflow.io import resample

    y = resample(np.asarray(y, np.float32), rate, SR) if rate != SR else np.asarray(y, np.float32)
    return _trim(y)


def _trim(y: np.ndarray, frame: int = 160, floor_db: float = -40.0) -> np.ndarray:
    frames = len(y) // frame
    if frames == 0:
        return y
    power = (y[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)
    level = 10 * np.log10(power / max(power.max(), 1e-12) + 1e-12)
    loud = np.nonzero(level > floor_db)[0]
    if len(loud) == 0:
        return y[:0]
    return y[loud[0] * frame:(loud[-1] + 1) * frame]


def conversation(voices: list[Voice], turns: int = 12, seed: int = 0, overlap: float = 0.0,
                 condition: str = "clean", prompts_per_turn: tuple[int, int] = (1, 3)
                 ) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """Turns between ``voices`` (each turn a different speaker from the last), pauses of 0.2-1.0 s, and with
    probability ``overlap`` a turn that starts 0.5-2 s before the previous one ends. ``condition``: 'clean',
    'telephone' (8 kHz, mu-law round trip) or 'noise' (pink-ish noise at 10 dB SNR). Returns the audio, its
    rate and the true turns (seconds, speaker name) in order of start."""
    rng = np.random.default_rng(seed)
    pieces: list[tuple[int, np.ndarray, str]] = []
    cursor, last = 0, None
    for _ in range(turns):
        choices = [v for v in voices if v.name != last] or voices
        voice = choices[int(rng.integers(len(choices)))]
        count = int(rng.integers(prompts_per_turn[0], prompts_per_turn[1] + 1))
        speech = [read_prompt(voice.prompts[int(rng.integers(len(voice.prompts)))]) for _ in range(count)]
        gap = np.zeros(int(rng.uniform(0.15, 0.35) * SR), np.float32)
        turn = np.concatenate([part for s in speech for part in (s, gap)][:-1])
        if last is not None and rng.random() < overlap:
            start = max(0, cursor - int(rng.uniform(0.5, 2.0) * SR))
        else:
            start = cursor + int(rng.uniform(0.2, 1.0) * SR)
        # the truth: each prompt's extent inside the turn
        offset = start
        for s in speech:
            pieces.append((offset, s, voice.name))
            offset += len(s) + len(gap)
        cursor = max(cursor, start + len(turn))
        last = voice.name
    total = cursor + SR // 2
    y = np.zeros(total, np.float32)
    for start, s, _ in pieces:
        y[start:start + len(s)] += s * np.float32(rng.uniform(0.6, 1.0) / max(np.abs(s).max(), 1e-6) * 0.5)
    truth = sorted((start / SR, (start + len(s)) / SR, name) for start, s, name in pieces)
    return _condition(y, condition, rng), SR if condition != "telephone" else 8000, truth


def short_replies(voices: list[Voice], replies: int = 8, seed: int = 0, condition: str = "clean",
                  reply_seconds: tuple[float, float] = (0.5, 1.2),
                  ) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """Two real voices where one answers the other briefly ('Hello.', 'Yes, I did.'): turns of 1-2 prompts
    of the first voice, each followed (0.2-0.4 s later) by a reply of the other, the start of one of its
    prompts cut at its quietest 20 ms between ``reply_seconds`` (shorter than the 1.5 s embedding windows,
    which hear it with its neighbours), and every third reply a full turn instead, so both voices have a
    centroid. Returns the audio, its rate and the true turns (seconds, speaker name) in order of start."""
    rng = np.random.default_rng(seed)
    first, second = (voices[i] for i in rng.choice(len(voices), 2, replace=False))
    pieces: list[tuple[int, np.ndarray, str]] = []
    cursor = 0

    def place(y: np.ndarray, name: str) -> None:
        nonlocal cursor
        start = cursor + int(rng.uniform(0.2, 0.4) * SR)
        pieces.append((start, y, name))
        cursor = start + len(y)

    def prompt(voice: Voice) -> np.ndarray:
        return read_prompt(voice.prompts[int(rng.integers(len(voice.prompts)))])

    for k in range(replies):
        for _ in range(int(rng.integers(1, 3))):
            place(prompt(first), first.name)
        reply = prompt(second)
        if k % 3 != 2 and len(reply) > reply_seconds[1] * SR:
            frame = SR // 50
            lo, hi = int(reply_seconds[0] * SR) // frame, int(reply_seconds[1] * SR) // frame
            power = (reply[:hi * frame].reshape(hi, frame) ** 2).mean(axis=1)
            reply = _trim(reply[:(lo + int(np.argmin(power[lo:]))) * frame])
        place(reply, second.name)
    y = np.zeros(cursor + SR // 2, np.float32)
    for start, part, _ in pieces:
        y[start:start + len(part)] += part * np.float32(rng.uniform(0.6, 1.0) / max(np.abs(part).max(), 1e-6) * 0.5)
    truth = sorted((start / SR, (start + len(part)) / SR, name) for start, part, name in pieces)
    return _condition(y, condition, rng), SR if condition != "telephone" else 8000, truth


def _condition(y: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    if condition == "clean":
        return y
    if condition == "noise":
        noise = np.cumsum(rng.standard_normal(len(y)).astype(np.float32)) * 0.02
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # pink-ish, no drift
        speech_power = np.mean(y[np.abs(y) > 1e-4] ** 2)
        noise *= np.sqrt(speech_power / 10 ** (10 / 10) / max(np.mean(noise ** 2), 1e-12))
        return (y + noise).astype(np.float32)
    if condition == "telephone":
        from audioflow.io import resample

        narrow = resample(y, SR, 8000)
        mu = 255.0
        coded = np.sign(narrow) * np.log1p(mu * np.minimum(np.abs(narrow), 1.0)) / np.log1p(mu)
        quantised = np.round(coded * 127) / 127  # 8-bit G.711 mu-law, encoded and decoded
        return (np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu).astype(np.float32)
    raise ValueError(condition)


def merge_turns(truth: list[tuple[float, float, str]], gap: float = 0.5) -> list[tuple[float, float, str]]:
    """Consecutive prompts of one speaker less than ``gap`` s apart as one turn (for display and counting)."""
    merged: list[list] = []
    for start, end, name in truth:
        if merged and merged[-1][2] == name and start - merged[-1][1] < gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, name])
    return [tuple(t) for t in merged]


TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"


def english_prompts(minimum_words: int = 3) -> list[tuple[str, str]]:
    """``(path, text)`` of Allison's English prompts whose exact text Asterisk ships (``asterisk-core-sounds-en``
    installs core-sounds-en.txt; ``scripts/setup.sh`` installs it as root): real speech with a known transcript.
    Prompts of at least ``minimum_words`` words, in file order."""
    import gzip

    if not os.path.exists(TRANSCRIPTS):
        return []
    folder = os.path.dirname(VOICES["allison"])
    found = []
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, colon, text = line.partition(":")
            if not colon or line.startswith(";"):
                continue
            path = os.path.join(folder, name.strip() + ".wav")
            # [what a tone or symbol is] and (n seconds of silence) describe the file; they are not said
            text = " ".join(re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", text).split())
            if os.path.exists(path) and len(text.split()) >= minimum_words and "<" not in text:
                found.append((path, text))
    return found


def monologue(prompts: list[tuple[str, str]], count: int = 20, seed: int = 0, condition: str = "clean",
              pauses: tuple[float, float] = (0.3, 1.5)) -> tuple[np.ndarray, int, str]:
    """``count`` prompts drawn at random, one after another with pauses of ``pauses`` seconds, in a
    ``condition`` (see :func:`conversation`). Returns the audio, its rate and the text said."""
    rng = np.random.default_rng(seed)
    chosen = [prompts[int(i)] for i in rng.choice(len(prompts), count, replace=False)]
    parts, said = [np.zeros(SR // 2, np.float32)], []
    for path, text in chosen:
        parts += [read_prompt(path), np.zeros(int(rng.uniform(*pauses) * SR), np.float32)]
        said.append(text)
    y = np.concatenate(parts)
    return _condition(y, condition, rng), SR if condition != "telephone" else 8000, " ".join(said)


# One spelling for words written both as one word and as two (as a NIST sclite GLM file does), and the keypad
# symbols the prompts' text writes where the voice says the name: neither is a recognition error.
_SAME = {"touch tone": "touchtone", "can not": "cannot", "file name": "filename", "voice mail": "voicemail",
         "voice over": "voiceover", "key pad": "keypad", "e mail": "email", "log in": "login", "*": " star ",
         "#": " pound "}


def normalise(text: str) -> str:
    """English text for WER the way Whisper's papers score it: OpenAI's ``EnglishTextNormalizer`` (lower case,
    punctuation dropped, numbers as digits whether said 'one two three four' or written 1234, contractions
    and British spellings standardised; ``openai-whisper`` is installed by ``scripts/setup.sh dev``), after
    compounds and keypad symbols in one spelling (``_SAME``)."""
    text = text.lower().replace("-", " ")
    for variant, spelling in _SAME.items():
        text = re.sub(rf"\b{variant}\b" if variant[0].isalpha() else re.escape(variant), spelling, text)
    return _whisper_normaliser()(text)


@functools.cache
def _whisper_normaliser():
    try:
        from whisper.normalizers import EnglishTextNormalizer
    except ImportError as e:
        raise SystemExit("WER needs openai-whisper's text normaliser: scripts/setup.sh dev") from e
    return EnglishTextNormalizer()


def utterances(count: int, seconds: tuple[float, float] = (4.0, 10.0), seed: int = 0,
               voices: list[Voice] | None = None) -> list[tuple[np.ndarray, str]]:
    """``count`` training clips of real speech at 16 kHz, each one speaker's prompts read one after another
    (pauses of 0.15-0.5 s) up to a length drawn from ``seconds``, speakers taken in turn. Returns
    ``(samples, speaker)`` pairs."""
    rng = np.random.default_rng(seed)
    voices = voices or speakers()
    clips = []
    for i in range(count):
        voice = voices[i % len(voices)]
        target = int(rng.uniform(*seconds) * SR)
        parts, size = [], 0
        while size < target:
            prompt = read_prompt(voice.prompts[int(rng.integers(len(voice.prompts)))])
            gap = np.zeros(int(rng.uniform(0.15, 0.5) * SR), np.float32)
            parts += [prompt / max(float(np.abs(prompt).max()), 1e-6) * 0.5, gap]
            size += len(prompt) + len(gap)
        clips.append((np.concatenate(parts)[:target].astype(np.float32), voice.name))
    return clips


SAMPLES = "/usr/share/sonic-pi/samples"  # sonic-pi-samples: CC0 recordings
MUSIC = "/usr/share/asterisk/moh"  # asterisk-moh-opsound-wav: real music tracks, 8 kHz, CC BY-SA


def _read_16k(path: str) -> np.ndarray:
    import soundfile as sf

    from audioflow.io import resample

    y, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(y.mean(axis=1), rate, SR) if rate != SR else y.mean(axis=1)


def real_noises() -> dict[str, np.ndarray]:
    """Real noises at 16 kHz, by kind, from recordings packages ship: ``vinyl`` (sonic-pi's vinyl hiss),
    ``crowd`` (:func:`babble` of four real voices), ``music`` (three Asterisk music-on-hold tracks, a 4 kHz
    band), ``machine`` (sonic-pi's 3D printer: motors and fans). Empty when the packages are missing."""
    music = sorted(glob.glob(f"{MUSIC}/*.wav"))[:3]
    if not (os.path.exists(f"{SAMPLES}/vinyl_hiss.flac") and music and len(speakers()) >= 4):
        return {}
    return {"vinyl": _read_16k(f"{SAMPLES}/vinyl_hiss.flac"), "crowd": babble(60.0, seed=1),
            "music": np.concatenate([_read_16k(p) for p in music]),
            "machine": _read_16k(f"{SAMPLES}/loop_3d_printer.flac")}


def at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``speech`` with ``noise`` (looped from a random point) added at ``snr_db`` dB (power over the whole clip)."""
    start = int(rng.integers(len(noise)))
    noise = np.resize(np.roll(noise, -start), len(speech))
    gain = np.sqrt(np.mean(speech ** 2) / (np.mean(noise ** 2) * 10 ** (snr_db / 10)))
    return (speech + gain * noise).astype(np.float32)


def sentences(count: int, half: int, seed: int = 0, per_clip: int = 3) -> list[tuple[np.ndarray, str]]:
    """``count`` clips of real speech with their text, each ``per_clip`` of Allison's prompts with 0.2-0.6 s
    pauses, peak 0.5, from one ``half`` of the prompts (0: even, 1: odd in file order): tune on one half,
    report on the other."""
    prompts = english_prompts(4)[half::2]
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        parts, said = [np.zeros(SR // 4, np.float32)], []
        for i in rng.choice(len(prompts), per_clip, replace=False):
            path, text = prompts[int(i)]
            parts += [read_prompt(path), np.zeros(int(rng.uniform(0.2, 0.6) * SR), np.float32)]
            said.append(text)
        y = np.concatenate(parts)
        clips.append(((y / np.abs(y).max() * 0.5).astype(np.float32), " ".join(said)))
    return clips


def babble(seconds: float = 60.0, talkers: int = 4, seed: int = 0) -> np.ndarray:
    """Real babble noise at 16 kHz: ``talkers`` speakers' prompts overlaid end to end (a crowd, the noise
    of cafeterias and open offices), normalised to a peak of 0.5."""
    rng = np.random.default_rng(seed)
    total = int(seconds * SR)
    y = np.zeros(total, np.float32)
    for voice in speakers()[-talkers:]:
        cursor = int(rng.integers(0, SR))
        while cursor < total:
            prompt = read_prompt(voice.prompts[int(rng.integers(len(voice.prompts)))])
            end = min(total, cursor + len(prompt))
            y[cursor:end] += prompt[: end - cursor] / max(float(np.abs(prompt).max()), 1e-6)
            cursor = end + int(rng.uniform(0.05, 0.3) * SR)
    return (y / max(float(np.abs(y).max()), 1e-6) * 0.5).astype(np.float32)


def write_clips(folder, count: int, seed: int = 0) -> tuple[list[str], str]:
    """:func:`utterances` written as 16-bit FLAC into ``folder`` (named ``speaker-NNNN.flac``), and 60 s of
    :func:`babble` as ``babble.flac`` beside the folder. Returns the clips' paths and the babble's."""
    from pathlib import Path

    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (y, speaker) in enumerate(utterances(count, seed=seed)):
        path = folder / f"{speaker}-{i:04d}.flac"
        sf.write(path, y, SR, subtype="PCM_16")
        paths.append(str(path))
    noise = folder.parent / "babble.flac"
    sf.write(noise, babble(60.0, seed=seed), SR, subtype="PCM_16")
    return paths, str(noise)


def sample_call() -> tuple[np.ndarray, int, list[tuple[float, float, str]]] | None:
    """A real telephone call of two people, 30 s, with its turns: the sample pyannote.audio's wheel ships
    (``sample.wav`` and ``sample.rttm``; MIT; scripts/setup.sh installs the wheel without its dependencies for
    these two files). Never used for tuning: it is the held-out check of word attribution. None when absent."""
    import importlib.util

    spec = importlib.util.find_spec("pyannote")
    folders = [Path(p) / "audio" / "sample" for p in (spec.submodule_search_locations if spec else [])]
    folder = next((f for f in folders if (f / "sample.wav").exists() and (f / "sample.rttm").exists()), None)
    if folder is None:
        return None
    import soundfile as sf

    y, sr = sf.read(folder / "sample.wav", dtype="float32")
    return y, sr, read_rttm(folder / "sample.rttm")


def read_rttm(path) -> list[tuple[float, float, str]]:
    """RTTM ``SPEAKER`` lines as ``(start, end, speaker)`` seconds, in order of start."""
    turns = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            turns.append((float(parts[3]), float(parts[3]) + float(parts[4]), parts[7]))
    return sorted(turns)


def _talking(start: float, end: float, truth: list[tuple[float, float, str]]) -> set[str]:
    """The true speakers talking at the middle of a word timed ``start``-``end``."""
    middle = (start + end) / 2
    return {name for a, b, name in truth if a <= middle < b}


def _mapping(scored: list[tuple[str, set[str]]], truth: list[tuple[float, float, str]]) -> dict[str, str]:
    """The one-to-one mapping of found to true speakers that agrees on most words (``(found, talking)``)."""
    from scipy.optimize import linear_sum_assignment

    found = sorted({s for s, _ in scored})
    true = sorted({name for _, _, name in truth})
    agree = np.zeros((len(found), len(true)))
    for speaker, talking in scored:
        for name in talking:
            agree[found.index(speaker), true.index(name)] += 1
    rows, cols = linear_sum_assignment(-agree)
    return {found[i]: true[j] for i, j in zip(rows, cols, strict=True)}


def wder(words: list[tuple[float, float, str]], truth: list[tuple[float, float, str]]) -> tuple[float, int]:
    """Word diarization error rate: of the words ``(start, end, speaker)`` whose midpoint lies in a true turn,
    the share whose speaker, under the one-to-one mapping of found to true speakers that agrees on most
    words, is not one of the true speakers talking there; and how many words were scored."""
    scored = [(speaker, talking) for start, end, speaker in words if (talking := _talking(start, end, truth))]
    if not scored:
        return 0.0, 0
    mapping = _mapping(scored, truth)
    wrong = sum(1 for speaker, talking in scored if mapping.get(speaker) not in talking)
    return wrong / len(scored), len(scored)


def speaker_words(words: list[tuple[float, float, str, str]]) -> dict[str, list[str]]:
    """``(start, end, word, speaker)`` as each speaker's words in order, normalised for scoring (lower case, no
    punctuation); words without a speaker form one stream of their own."""
    streams: dict[str, list[str]] = {}
    for _, _, word, speaker in sorted(words, key=lambda w: w[0]):
        token = re.sub(r"[^\w']+", "", word.lower())
        if token:
            streams.setdefault(str(speaker), []).append(token)
    return streams


def _edits(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = np.arange(len(hypothesis) + 1)
    for i, word in enumerate(reference, 1):
        previous, row = row, np.empty_like(row)
        row[0] = i
        for j, other in enumerate(hypothesis, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (word != other))
    return int(row[-1])


def cpwer(hypothesis: dict[str, list[str]], reference: dict[str, list[str]]) -> tuple[float, int]:
    """Concatenated minimum-permutation WER (CHiME-6): each speaker's words concatenated, the found speakers
    matched one to one with the true ones (unmatched ones against nothing) so that the summed edit distance is
    least, divided by the reference's word count. A word given to the wrong speaker costs a deletion and an
    insertion. Returns the rate and the reference's word count."""
    from scipy.optimize import linear_sum_assignment

    found, true = list(hypothesis), list(reference)
    size = max(len(found), len(true))
    cost = np.zeros((size, size), int)
    for i in range(size):
        for j in range(size):
            cost[i, j] = _edits(reference[true[j]] if j < len(true) else [],
                                hypothesis[found[i]] if i < len(found) else [])
    rows, cols = linear_sum_assignment(cost)
    words = sum(len(w) for w in reference.values())
    return float(cost[rows, cols].sum()) / max(words, 1), words


def true_speaker(start: float, end: float, truth: list[tuple[float, float, str]]) -> str:
    """The true speaker of a word timed ``start``-``end``: the one whose turns cover most of it (the nearest
    turn when none does)."""
    end = max(end, start + 0.02)
    covered: dict[str, float] = {}
    for a, b, name in truth:
        covered[name] = covered.get(name, 0.0) + max(0.0, min(b, end) - max(a, start))
    best = max(covered, key=covered.get) if covered else ""
    if covered and covered[best] > 0:
        return best
    middle = (start + end) / 2
    return min(truth, key=lambda t: max(t[0] - middle, middle - t[1]))[2]


def attribution_cpwer(words: list[tuple[float, float, str, str]], truth: list[tuple[float, float, str]]
                      ) -> tuple[float, int]:
    """What a transcript's speaker labels add to its WER under cpWER: the cpWER of its words as attributed against
    the same words given to their true speakers (:func:`true_speaker`), so recognition errors cancel and only
    words with the wrong speaker count (each twice: a deletion and an insertion). cpWER = WER + this, give or
    take the words a wrong speaker also misaligns. A word in overlapped speech (two true speakers talking at
    its middle) is right with either of them, as in :func:`wder`: turns cannot say which of two voices
    Whisper followed there, and picking one would charge a system for the reference's guess."""
    scored = [(who, _talking(s, e, truth)) for s, e, _, who in words]
    mapping = _mapping([x for x in scored if x[1]], truth) if any(t for _, t in scored) else {}
    reference = speaker_words([(s, e, w, mapping[who] if len(talking) > 1 and mapping.get(who) in talking
                                else true_speaker(s, e, truth))
                               for (s, e, w, _), (who, talking) in zip(words, scored, strict=True)])
    return cpwer(speaker_words(words), reference)
