"""Mutated bytes of valid files of every format: a clean AudioflowError or valid audio, nothing else
(no other exception, no hang, no crash, no NaN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audioflow
from conftest import make_file

KINDS = ["wav_pcm16", "wav_float", "aiff_pcm16", "flac", "mp3", "ogg", "opus", "m4a"]


class Seeds(dict):
    def __repr__(self) -> str:  # keep hypothesis' failure reports readable
        return f"<seed files: {', '.join(self)}>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Seeds:
    d = tmp_path_factory.mktemp("fuzz")
    return Seeds({k: Path(make_file(d, k, seconds=0.3, channels=2, sr=22050)).read_bytes() for k in KINDS})


mutation = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                                        max_size=16)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=64))),
    st.tuples(st.just("header"), st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), min_size=1,
                                          max_size=8)),
)


def mutate(data: bytes, m) -> bytes:
    kind, arg = m
    buf = bytearray(data)
    if kind in ("flip", "header"):
        for pos, value in arg:
            buf[pos % len(buf)] = value
    elif kind == "truncate":
        del buf[arg % len(buf):]
    else:
        pos, blob = arg
        buf[pos % len(buf):pos % len(buf)] = blob
    return bytes(buf)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(m=mutation)
def test_mutated_files_fail_cleanly_or_decode(seeds, kind, m):
    data = mutate(seeds[kind], m)
    for kwargs in ({}, {"offset": 0.1, "duration": 0.1, "sr": 16000}):
        try:
            y, sr = audioflow.load(data, mono=False, **kwargs)
        except audioflow.AudioflowError as e:
            assert str(e)
            continue
        assert isinstance(y, np.ndarray) and y.dtype == np.float32 and sr > 0
        assert np.isfinite(y).all() if kind.startswith("wav_float") else True
    try:
        described = audioflow.info(data)
    except audioflow.AudioflowError:
        return
    assert described.sample_rate > 0 and described.channels > 0
