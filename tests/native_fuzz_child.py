"""Run by tests/test_native_fuzz.py in a child process: one entry point that reaches native code, fed every
odd length, rate, channel count and sample value of the matrix. It prints ``CASE <name>`` before each call
(so a crash names the case that caused it) and one JSON line per result; a crash kills only this child."""

from __future__ import annotations

import json
import sys

import numpy as np

import audioflow
from audioflow import speech
from audioflow.speech.denoise import DeepFilterNet, DenoiseStream, RNNoise

LENGTHS = (0, 1, 479, 480, 481, 959, 160, 4097)
RATES = (4000, 8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000)
BAD_RATES = (1, 7, 3999)
VALUES = ("noise", "silence", "denormal", "nan", "inf", "huge", "clipped")


def signal(n: int, channels: int, kind: str, seed: int = 0) -> np.ndarray:
    x = (np.random.default_rng(seed).standard_normal((channels, n)) * 0.1).astype(np.float32)
    if kind == "silence":
        x[:] = 0
    elif kind == "denormal":
        x[:] = np.float32(1e-40)
    elif kind == "nan" and n:
        x[:, n // 2] = np.nan
    elif kind == "inf" and n:
        x[:, n // 2] = np.inf
    elif kind == "huge":
        x = np.where(x >= 0, 1e30, -1e30).astype(np.float32)
    elif kind == "clipped":
        x = np.sign(x) * 4.0
    return x[0] if channels == 1 else x


def cases(name: str):
    """(label, call) pairs for one entry point."""
    if name in ("deepfilternet", "rnnoise", "spectral"):
        for n in LENGTHS:
            for sr in RATES:
                yield f"{name} n={n} sr={sr}", (signal(n, 1, "noise"), sr)
        for sr in BAD_RATES:
            yield f"{name} bad rate {sr}", (signal(480, 1, "noise"), sr)
        for channels in (2, 3, 8):
            yield f"{name} channels={channels}", (signal(481, channels, "noise"), 16000)
        for kind in VALUES:
            yield f"{name} values={kind}", (signal(4097, 1, kind), 48000)
        yield f"{name} 3-d", (np.zeros((1, 1, 480), np.float32), 48000)
        yield f"{name} float64 strided", (np.zeros((960,), np.float64)[::2], 48000)
    elif name == "denoise-stream":
        for sr in (8000, 16000, 44100, 48000):
            for block in (1, 7, 479, 481, 4801):
                yield f"stream sr={sr} block={block}", (sr, block)
    elif name in ("silero", "webrtc"):
        for n in LENGTHS:
            for sr in RATES:
                yield f"{name} n={n} sr={sr}", (signal(n, 1, "noise"), sr)
        for sr in BAD_RATES:
            yield f"{name} bad rate {sr}", (signal(480, 1, "noise"), sr)
        for channels in (2, 6):
            yield f"{name} channels={channels}", (signal(1601, channels, "noise"), 16000)
        for kind in VALUES:
            yield f"{name} values={kind}", (signal(4097, 1, kind), 16000)
    elif name in ("transcribe", "diarize"):
        for n in (0, 1, 479, 481, 16001):
            for sr in (8000, 44100):
                yield f"{name} n={n} sr={sr}", (signal(n, 1, "noise"), sr)
        for kind in ("nan", "huge", "denormal"):
            yield f"{name} values={kind}", (signal(8000, 1, kind), 16000)
        yield f"{name} bad rate 1", (signal(480, 1, "noise"), 1)
    elif name == "decode":
        import io

        import soundfile as sf

        for fmt, subtype in (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("AIFF", "PCM_24"),
                             ("OGG", "VORBIS")):
            for n in (0, 1, 479, 481):
                for sr in (1, 8000, 44100, 192000):
                    for channels in (1, 2, 8):
                        buffer = io.BytesIO()
                        try:
                            sf.write(buffer, signal(n, channels, "noise").T.reshape(n, channels), sr, format=fmt,
                                     subtype=subtype)
                        except Exception:
                            continue  # a file libsndfile will not write is not an input
                        yield f"decode {fmt} n={n} sr={sr} channels={channels}", buffer.getvalue()
    elif name == "iir":  # the batched IIR kernel: every shape, values and lane plan it can be handed
        for rows in (1, 2, 7, 8, 9, 33):
            for n in (0, 1, 2, 7, 479, 4097):
                for order in (1, 2, 5, 32):
                    yield f"iir rows={rows} n={n} order={order}", (rows, n, order, "noise")
        for kind in VALUES:
            yield f"iir values={kind}", (3, 4097, 4, kind)
        yield "iir raw lanes", None
    elif name == "synthesize":
        texts = ["", " ", "\x00\x01", "a" * 3000, "Hello, world.", "\u202eevil", "🎉 party", "12:30 on 3/4/25",
                 "<speak>tag</speak>", "\n\n\t"]
        for voice in ("piper:joe", "espeak:en", "flite:slt"):
            for i, text in enumerate(texts):
                for rate in (0.25, 1.0, 4.0):
                    yield f"synthesize {voice} text#{i} rate={rate}", (text, voice, rate)
    elif name == "encode":
        for fmt in ("wav", "flac", "ogg", "opus", "mp3", "m4a", "aiff"):
            for sr in (1, 4000, 8000, 11025, 22050, 44100, 96000, 192000):
                for channels in (1, 2, 8):
                    yield f"encode {fmt} sr={sr} channels={channels}", (fmt, signal(481, channels, "noise"), sr)
            yield f"encode {fmt} empty", (fmt, np.zeros(0, np.float32), 16000)
            yield f"encode {fmt} 64 channels", (fmt, signal(100, 64, "noise"), 16000)
            yield f"encode {fmt} nan", (fmt, signal(100, 1, "nan"), 16000)


def run(name: str, args) -> dict:
    if name in ("deepfilternet", "rnnoise", "spectral"):
        y, sr = args
        out = speech.denoise(y, sr, method=name)
        assert out.shape == np.shape(y), (out.shape, np.shape(y))
        return {"finite": bool(np.isfinite(out).all())}
    if name == "denoise-stream":
        sr, block = args
        stream = DenoiseStream(DeepFilterNet() if block % 2 else RNNoise(), sr)
        x = signal(sr // 2, 1, "noise")
        parts = [stream.accept(x[i:i + block]) for i in range(0, len(x), block)] + [stream.flush()]
        out = np.concatenate(parts)
        assert abs(len(out) - len(x)) <= sr // 100 + 2, (len(out), len(x))
        return {"finite": bool(np.isfinite(out).all())}
    if name in ("silero", "webrtc"):
        y, sr = args
        vad = speech.SileroVAD() if name == "silero" else speech.WebRTCVAD()
        segments = vad.segments(y, sr)
        if y.ndim == 1 and len(y) >= 480:
            stream = speech.SileroVAD() if name == "silero" else speech.WebRTCVAD()
            mono = audioflow.resample(y, sr, 16000) if sr != 16000 else y
            for i in range(0, len(mono), 333):  # odd block sizes through the streaming path
                stream.accept(mono[i:i + 333])
            stream.flush()
        return {"segments": len(segments)}
    if name == "transcribe":
        y, sr = args
        return {"text": speech.Transcriber()(y, sr).text}
    if name == "diarize":
        y, sr = args
        return {"turns": len(speech.Diarizer()(y, sr))}
    if name == "decode":
        y, sr = audioflow.load(args, sr=None, mono=False)
        z, _ = audioflow.load(args, sr=16000, mono=True)
        blocks = list(audioflow.stream(args, 0.01, sr=16000))
        return {"frames": int(y.shape[-1]), "streamed": int(sum(b.shape[-1] for b in blocks)), "mono": len(z)}
    if name == "iir":
        return run_iir(args)
    if name == "synthesize":
        text, voice, rate = args
        audio = speech.synthesize(text, voice, rate)
        assert np.isfinite(audio.samples).all()
        return {"seconds": round(audio.duration, 2)}
    if name == "encode":
        fmt, y, sr = args
        data = audioflow.io.encode(y, sr, fmt)
        back, _ = audioflow.load(data, sr=None, mono=False)
        return {"bytes": len(data), "frames": int(back.shape[-1])}
    raise ValueError(name)


def run_iir(args) -> dict:
    """Filter through the public path; with no args, hand the kernel hostile plans directly: each must be
    refused with ValueError before any sample is touched."""
    import torch

    from audioflow.dsp import iir

    if args is None:
        if iir._iir is None:
            return {"native": False}
        x, out = np.zeros((2, 100), np.float32), np.zeros((2, 100), np.float32)
        sos = np.ascontiguousarray(iir.butterworth_sos([100.0, 200.0], 2, "lowpass", 1000), np.float32)
        refused = 0
        for lanes, rows, time in (([[2, 0, 10, 0]], 2, 100), ([[0, 0, 101, 0]], 2, 100), ([[0, 5, 10, 6]], 2, 100),
                                  ([[0, -1, 10, 0]], 2, 100), ([[0, 10, 5, 0]], 2, 100), ([[0, 0, 10, 0]], 3, 100),
                                  ([[0, 0, 10, 0]], 2, 101), ([[0, 0, 10, 0]], 0, 0), ([[-1, 0, 10, 0]], 2, 100)):
            try:
                iir._iir.sos_lanes(x, out, rows, time, sos, np.asarray(lanes, np.int64), False)
            except ValueError:
                refused += 1
        for bad in (lambda: iir._iir.sos_lanes(x, x, 2, 100, sos, np.zeros((1, 4), np.int64), False),
                    lambda: iir._iir.sos_lanes(x, out, 2, 100, sos[:, :, :5].copy(), np.zeros((1, 4), np.int64), 0),
                    lambda: iir._iir.sos_lanes(x, out, 2, 100, sos, np.zeros((1, 3), np.int64), False),
                    lambda: iir._iir.sos_lanes(x, out[:, ::2], 2, 50, sos, np.zeros((1, 4), np.int64), False)):
            try:
                bad()
            except (ValueError, TypeError, BufferError):
                refused += 1
        assert refused == 13, refused
        return {"refused": refused}
    rows, n, order, kind = args
    x = torch.from_numpy(np.stack([signal(n, 1, kind, seed=i) for i in range(rows)]).reshape(rows, n))
    sos = iir.butterworth_sos(np.linspace(20.0, 7000.0, rows), order, "lowpass", 16000)
    causal = iir.sosfilt(x, sos)
    both = iir.sosfilt(x, sos, zero_phase=True)
    assert causal.shape == both.shape == x.shape
    return {"finite": bool(torch.isfinite(both).all())}


def main() -> None:
    name = sys.argv[1]
    for label, args in cases(name):
        print(json.dumps({"case": label}), flush=True)
        try:
            result = run(name, args)
            print(json.dumps({"case": label, "ok": True, **result}), flush=True)
        except audioflow.AudioflowError as e:
            print(json.dumps({"case": label, "ok": False, "error": type(e).__name__, "message": str(e)}), flush=True)
        except Exception as e:  # anything else is a defect the parent reports
            print(json.dumps({"case": label, "ok": False, "error": "UNCAUGHT " + type(e).__name__,
                              "message": str(e)[:300]}), flush=True)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
