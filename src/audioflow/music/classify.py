"""Run a user's audio classifier: a ``torch.export`` (.pt2), TorchScript (.pt) or ONNX (.onnx) model with a
small JSON description of the input it expects (sample rate, feature, clip length, labels), as
:func:`export_classifier` writes it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, ParameterError

SPEC_NAME = "audioflow-classifier.json"


@dataclass
class ClassifierSpec:
    """What the model takes. ``features``: a feature name and its options (``{"name": "logmel", "n_mels":
    40}``) or None for raw waveforms ``[batch, time]``; ``max_duration``: clips are centre-cropped (and
    padded) to this many seconds; ``normalize``: 'utterance' standardises each input (mean 0, std 1)."""

    labels: list[str]
    sample_rate: int = 16000
    features: dict[str, Any] | None = None
    max_duration: float | None = None
    normalize: str | None = None
    model_file: str = "model.pt2"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str) -> ClassifierSpec:
        path = os.path.join(folder, SPEC_NAME)
        if not os.path.exists(path):
            raise ParameterError(f"{folder}: no {SPEC_NAME} describing the model's input", folder)
        with open(path) as f:
            return cls(**json.load(f))


def export_classifier(model: Any, folder: str, spec: ClassifierSpec, example: Any, format: str = "pt2") -> str:
    """Save ``model`` (a torch module) plus its spec into ``folder``: ``format`` 'pt2' (``torch.export``) or
    'onnx' (needs the ``onnx`` package; run with onnxruntime). The batch size stays dynamic; ``example`` is
    one input batch. Returns the folder."""
    import dataclasses
    import warnings

    import torch

    if format not in ("pt2", "onnx"):
        raise ParameterError(f"format must be 'pt2' or 'onnx', got {format!r}")
    os.makedirs(folder, exist_ok=True)
    model.eval()
    spec = dataclasses.replace(spec, model_file=f"model.{format}")
    if format == "pt2":
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, os.path.join(folder, spec.model_file))
    else:
        with warnings.catch_warnings():  # the TorchScript-based exporter: the new one needs onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), os.path.join(folder, spec.model_file), dynamo=False,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    with open(os.path.join(folder, SPEC_NAME), "w") as f:
        json.dump({k: v for k, v in spec.__dict__.items()}, f, indent=1)
    return folder


def is_huggingface(model: str) -> bool:
    """A Hugging Face checkpoint: a folder with ``config.json`` (and no audioflow spec), or a hub name
    (``org/name``, downloaded by transformers when online)."""
    if os.path.isdir(model):
        return os.path.exists(os.path.join(model, "config.json")) and not os.path.exists(
            os.path.join(model, SPEC_NAME))
    return model.count("/") == 1 and not model.startswith((".", "/"))


class Classifier:
    """A loaded classifier: ``predict(clips, sr)`` gives ``[clips, labels]`` probabilities.

    ``folder``: a folder written by :func:`export_classifier` (torch.export, TorchScript or ONNX with its
    spec), or a Hugging Face audio-classification checkpoint (a local folder, or a hub name when online:
    its feature extractor prepares the input and its ``id2label`` names the classes)."""

    def __init__(self, folder: str, device: str = "cpu") -> None:
        import torch

        from ..features.registry import build_feature

        self.device, self.huggingface = device, None
        if is_huggingface(folder):
            self._load_huggingface(folder, device)
            return
        self.spec = ClassifierSpec.load(folder)
        path = os.path.join(folder, self.spec.model_file)
        if path.endswith(".onnx"):
            try:
                import onnxruntime
            except ImportError as e:
                raise MissingDependencyError("ONNX models need onnxruntime: pip install 'audioflow[speech]'") from e
            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.model = None
        elif path.endswith(".pt2"):  # torch.export
            self.model = torch.export.load(path).module().to(device)
            self.session = None
        else:  # TorchScript
            self.model = torch.jit.load(path, map_location=device).eval()
            self.session = None
        options = dict(self.spec.features or {})
        name = options.pop("name", None)
        self.feature = build_feature(name, self.spec.sample_rate, **options) if name else None

    def _load_huggingface(self, name: str, device: str) -> None:
        try:
            from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        except ImportError as e:
            raise MissingDependencyError("Hugging Face checkpoints need transformers: pip install transformers") from e
        local = os.path.isdir(name)
        self.extractor = AutoFeatureExtractor.from_pretrained(name, local_files_only=local)
        self.huggingface = AutoModelForAudioClassification.from_pretrained(name, local_files_only=local)
        self.huggingface = self.huggingface.to(device).eval()
        labels = self.huggingface.config.id2label
        self.spec = ClassifierSpec(labels=[str(labels[i]) for i in range(len(labels))],
                                   sample_rate=int(self.extractor.sampling_rate))

    def _batch(self, clips: list[np.ndarray]) -> Any:
        import torch

        size = round(self.spec.max_duration * self.spec.sample_rate) if self.spec.max_duration else max(
            len(c) for c in clips)
        x = torch.zeros(len(clips), size)
        for i, clip in enumerate(clips):
            start = max(0, (len(clip) - size) // 2)
            piece = torch.from_numpy(np.ascontiguousarray(clip[start:start + size], np.float32))
            x[i, : len(piece)] = piece
        if self.feature is not None:
            x = self.feature(x)
        if self.spec.normalize == "utterance":
            dims = tuple(range(1, x.ndim))
            x = (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-5)
        return x

    def predict(self, clips: list[np.ndarray], sr: int) -> np.ndarray:
        """Class probabilities ``[clips, labels]`` for mono clips at ``sr`` Hz."""
        import torch

        from ..io import resample

        clips = [c if sr == self.spec.sample_rate else resample(c, sr, self.spec.sample_rate) for c in clips]
        with torch.no_grad():
            if self.huggingface is not None:
                inputs = self.extractor(clips, sampling_rate=self.spec.sample_rate, return_tensors="pt", padding=True)
                logits = self.huggingface(**{k: v.to(self.device) for k, v in inputs.items()}).logits.cpu()
                return torch.softmax(logits.float(), dim=-1).numpy()
            x = self._batch(clips)
            if self.session is not None:
                logits = torch.from_numpy(self.session.run(None, {self.session.get_inputs()[0].name: x.numpy()})[0])
            else:
                logits = self.model(x.to(self.device)).cpu()
        return torch.softmax(logits.float(), dim=-1).numpy()
