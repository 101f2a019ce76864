"""Speech stages: denoise, diarize, transcribe (the vad stage lives with the others in ``stages``). Thin
shells over ``audioflow.speech``; models load once per worker through the model manager."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from ..audio import Segment
from .stage import Option, Stage, write_text_atomic
from .stages import joined_audio_outputs, shifted, write_audio_output


def vad_speech(annotations: Any) -> list[Segment] | None:
    """Speech segments a vad step already found (in this audio's clock), or None."""
    vad = annotations.results.get("vad")
    if not vad or vad.get("silence_dropped"):
        return None
    return [Segment(s["start"], s["end"], "speech", s.get("probability")) for s in vad["segments"]]


class Denoise(Stage):
    """Speech denoising with DeepFilterNet3 (default), RNNoise, or spectral gating."""

    name = "denoise"
    memory_fixed, memory_factor, work_rate, work_mono = 32 << 20, 6.0, 48000, True  # channel by channel, 48 kHz
    options: ClassVar[dict[str, Option]] = {
        "method": Option("str", "deepfilternet", "deepfilternet, rnnoise, or spectral (no model)",
                         ("deepfilternet", "rnnoise", "spectral")),
        "atten_lim": Option("float", 100.0, "most noise attenuation, dB (100: none; 20-30 keeps ambience)", ge=0,
                            le=100),
        "write": Option("bool", True, "write the denoised audio", remote=False),
        "format": Option("str", "flac", "denoised file format", ("flac", "wav", "ogg", "opus", "mp3"), remote=False),
    }

    def setup(self, models) -> None:
        from ..speech.denoise import load_denoiser

        c = self.config
        self.models = models
        self.denoiser = models.get(f"denoise:{c['method']}:{c['atten_lim']}",
                                   lambda device: load_denoiser(c["method"], atten_lim_db=c["atten_lim"]))

    def __call__(self, audio, annotations):
        self.ensure_setup()
        out = dataclasses.replace(audio, samples=self.denoiser(audio.samples, audio.sample_rate))
        write_audio_output(self, out, annotations, "denoised", {"method": self.config["method"]})
        return out, annotations

    def merge(self, parts):
        return {"method": self.config["method"], "chunks": len(parts)} | joined_audio_outputs(
            [r for _, r in parts], self.config["format"])


class Diarize(Stage):
    """Speaker turns (VAD, GE2E embeddings, clustering, resegmentation); writes RTTM."""

    name = "diarize"
    memory_fixed, memory_factor, work_rate, work_mono = 256 << 20, 1.5, 16000, True
    # clustering compares every embedding window with every other: memory grows with the square of the
    # length (measured 328, 658 and 1219 MB at 10, 30 and 50 min): ~90 bytes per second squared
    memory_per_second_squared = 96.0

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        return super().work_bytes(duration, rate, channels) + self.memory_per_second_squared * duration ** 2
    options: ClassVar[dict[str, Option]] = {
        "num_speakers": Option("int", None, "the speaker count, when known", ge=1, le=32),
        "min_speakers": Option("int", 1, "fewest speakers the automatic count considers", ge=1, le=32),
        "max_speakers": Option("int", 8, "most speakers the automatic count considers", ge=1, le=32),
        "min_turn": Option("float", 0.3, "shortest turn kept, seconds", ge=0, le=10),
        "write": Option("bool", True, "write an RTTM file", remote=False),
    }
    uses_gpu = True

    def validate(self) -> None:
        from ..speech.diarize import DiarizeOptions

        c = self.config
        self.diarize_options = DiarizeOptions(c["num_speakers"], c["min_speakers"], c["max_speakers"],
                                              min_turn=c["min_turn"])
        self.diarize_options.check()

    def setup(self, models) -> None:
        from ..speech.diarize import Diarizer

        self.models = models
        self.diarizer = models.get("diarizer", lambda device: Diarizer(device=device))
        self._speakers: list[np.ndarray] = []

    def __call__(self, audio, annotations):
        self.ensure_setup()
        turns, centroids = self.diarizer.turns_and_centroids(audio.samples, audio.sample_rate, self.diarize_options,
                                                              vad_speech(annotations))
        if annotations.chunk is not None:
            turns = self._global_names(turns, centroids, first=annotations.chunk == 0)
        result: dict[str, Any] = {"speakers": sorted({t.label for t in turns}),
                                  "turns": [{"start": t.start, "end": t.end, "speaker": t.label} for t in turns]}
        if self.config["write"] and annotations.chunk is None:
            result.update(self._write_rttm(turns, annotations.id, annotations.output_path("rttm", annotations.id)))
        self._target = (annotations.id, annotations.output_path("rttm", annotations.id))
        annotations.results[self.name] = result
        if annotations.chunk is None and result.get("file"):
            annotations.add_file(self.name, result["file"])
        return audio, annotations

    def _global_names(self, turns: list[Segment], centroids: dict[str, np.ndarray], first: bool) -> list[Segment]:
        """A long input's chunks are diarized one by one: each chunk's speakers are matched to the speakers
        of earlier chunks by centroid similarity (a new speaker when none is similar), so labels hold
        across the whole input."""
        if first:
            self._speakers = []
        names = {}
        for label, centroid in centroids.items():
            similar = [float(centroid @ known) for known in self._speakers]
            if similar and max(similar) >= 0.75:
                index = int(np.argmax(similar))
            else:
                self._speakers.append(centroid)
                index = len(self._speakers) - 1
            names[label] = f"SPEAKER_{index:02d}"
        return [dataclasses.replace(t, label=names[t.label]) for t in turns]

    @staticmethod
    def _write_rttm(turns: list[Segment], file_id: str, target: str | None) -> dict[str, Any]:
        if target is None:
            return {}
        import io

        from ..speech.diarize import write_rttm

        text = io.StringIO()
        write_rttm(turns, file_id, text)
        write_text_atomic(f"{target}.rttm", text.getvalue())
        return {"file": f"{target}.rttm"}

    def merge(self, parts):
        turns = [shifted(t, offset) for offset, result in parts for t in result["turns"]]
        merged: dict[str, Any] = {"speakers": sorted({t["speaker"] for t in turns}), "turns": turns,
                                  "chunks": len(parts)}
        if self.config["write"]:
            file_id, target = self._target
            segments = [Segment(t["start"], t["end"], t["speaker"]) for t in turns]
            merged.update(self._write_rttm(segments, file_id, target))
        return merged


class Transcribe(Stage):
    """Whisper transcription (faster-whisper); JSON, TXT, SRT and VTT; speaker-attributed after diarize."""

    name = "transcribe"
    memory_fixed, memory_factor, work_rate, work_mono = 128 << 20, 2.5, 16000, True  # windowed: ~linear
    options: ClassVar[dict[str, Option]] = {
        "engine": Option("str", "whisper", "whisper (faster-whisper), or pocketsphinx (English, tiniest install)",
                         ("whisper", "pocketsphinx")),
        "model": Option("str", None, "Whisper model directory or name (default: $AUDIOFLOW_WHISPER_MODEL, then "
                                     "the packaged tiny.en)", remote=False),
        "language": Option("str", None, "language code (e.g. en); none: detect", max_length=8, pattern="[A-Za-z]+"),
        "task": Option("str", "transcribe", "transcribe, or translate to English", ("transcribe", "translate")),
        "beam_size": Option("int", 5, "beam search width (1: greedy, fastest)", ge=1, le=10),
        "word_timestamps": Option("bool", True, "times for every word"),
        "formats": Option("str", "json+txt+srt+vtt", "files to write, joined by '+' (json, txt, srt, vtt)",
                          remote=False),
        "prompt": Option("str", None, "text that primes vocabulary and style", max_length=2000),
        "temperature": Option("float", None, "sampling temperature (none: 0 with Whisper's fallback ladder)", ge=0,
                              le=1),
    }
    uses_gpu = True

    def validate(self) -> None:
        from ..errors import ParameterError
        from ..speech.transcribe import TRANSCRIPT_FORMATS

        self.formats = [f for f in (self.config["formats"] or "").split("+") if f]
        bad = [f for f in self.formats if f not in TRANSCRIPT_FORMATS]
        if bad:
            raise ParameterError(f"transcribe:formats {'+'.join(bad)} unknown; choose from "
                                 f"{'+'.join(TRANSCRIPT_FORMATS)}")
        if self.config["beam_size"] < 1:
            raise ParameterError("transcribe:beam_size must be >= 1")

    def setup(self, models) -> None:
        import torch

        from ..speech.transcribe import PocketSphinxTranscriber, Transcriber

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
        from ..speech.transcribe import Transcript

        self.ensure_setup()
        c = self.config
        transcript = self.models.run(self.model_key, self.load, lambda model: model(
            audio.samples, audio.sample_rate, language=c["language"], task=c["task"],
            word_timestamps=c["word_timestamps"], beam_size=c["beam_size"], speech=vad_speech(annotations),
            initial_prompt=c["prompt"], **({} if c["temperature"] is None else {"temperature": c["temperature"]})))
        assert isinstance(transcript, Transcript)
        diarized = annotations.results.get("diarize")
        if diarized and c["word_timestamps"]:
            transcript = transcript.with_speakers([Segment(t["start"], t["end"], t["speaker"])
                                                   for t in diarized["turns"]])
        result = transcript.to_dict()
        self._target = (annotations.output_dir, annotations.id)
        if annotations.chunk is None:
            for path in self._write(transcript, annotations):
                annotations.add_file(self.name, path)
            result["files"] = annotations.files.get(self.name, [])
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

    def merge(self, parts):
        from ..pipeline.stage import Annotations
        from ..speech.transcribe import Transcript

        segments = [{**shifted(s, offset), "words": [shifted(w, offset) for w in s["words"]]}
                    for offset, result in parts for s in result["segments"]]
        first = parts[0][1]
        duration = parts[-1][0] + parts[-1][1]["duration"]
        transcript = Transcript.from_dict({**first, "segments": segments, "duration": duration})
        merged = transcript.to_dict() | {"chunks": len(parts)}
        output_dir, file_id = self._target
        merged["files"] = self._write(transcript, Annotations("", file_id, output_dir))
        return merged
