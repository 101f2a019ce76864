"""The HTTP endpoints by concern: speech (transcribe, diarize, vad, synthesize), audio (denoise, enhance,
analyze, features), the OpenAI-compatible ones, jobs for long inputs, and the server's own (health,
models, metrics, the page).
Each module has a ``router``; the parameters of stage endpoints come from the stages' option declarations
(:func:`~audioflow.serve.options.query_options`)."""

from . import audio, jobs, openai, server, speech

ROUTERS = [speech.router, audio.router, openai.router, jobs.router, server.router]

__all__ = ["ROUTERS"]
