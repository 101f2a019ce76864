"""The ``audioflow`` command (typer + rich).

(Just over 400 lines on purpose: one module for the whole command line, each command a thin shell over
the library, so ``--help`` and the commands read in one place.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from . import __version__
from .errors import AudioflowError, ParameterError

# Every command's --help ends with these; the documentation tests run each one (tests/test_docs.py).
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "info": [("audioflow info talk.wav song.m4a", "rate, channels, duration, codec: headers only"),
             ("audioflow info recordings/*.flac > table.tsv", "piped: tab-separated, whole paths")],
    "convert": [("audioflow convert song.m4a song.flac", "the extension picks the format"),
                ("audioflow convert talk.wav talk-16k.flac --sr 16000 --mono", "resample and mix down"),
                ("audioflow convert talk.wav talk.opus --bitrate 32", "lossy, 32 kbit/s")],
    "pack": [("audioflow pack clips/ dataset/ --field audio=waveform:sr=16000", "int16 waveforms at 16 kHz"),
             ("audioflow pack train.csv mels/ -f audio=mel:n_mels=80 -f label=string", "log-mels and a label column"),
             ("audioflow pack clips/ s3://bucket/clips.afds -f audio=flac:sr=16000 --engine ray",
              "encoded on a Ray cluster, shards straight into a bucket")],
    "process": [("audioflow process recordings/ -o out/ --steps split:method=silence,max=30,enhance:lufs=-23,"
                 "analyze,features", "one comma-separated list"),
                ("audioflow process meetings/ -o minutes/ -s vad -s diarize -s transcribe", "or one --steps each"),
                ("audioflow process recordings/ -o analysis/ -s analyze --resume", "skip what the last run finished"),
                ("audioflow process music/ -o stems/ -s separate", "vocals and accompaniment of every song")],
    "steps": [("audioflow steps", "every step and what it does"),
              ("audioflow steps enhance split", "their options with types, defaults, units and bounds")],
    "dedupe": [("audioflow dedupe music/", "a table of duplicate and near-duplicate pairs"),
               ("audioflow dedupe music/ --json --threshold 0.9", "JSON lines, stricter")],
    "say": [('audioflow say "Your order has shipped." -o notice.wav', "Piper's joe voice, offline"),
            ('echo "Hello there." | audioflow say - -o hello.mp3 --voice espeak:en-us+f3', "text from stdin"),
            ("audioflow say --list-voices", "the voices installed here")],
    "serve": [("audioflow serve", "http://127.0.0.1:8000/ (page), /docs (API); loopback only without keys"),
              ("audioflow serve --host 0.0.0.0 --api-key-file keys.txt --workers 2",
               "open to the network: keys of 16+ characters, one per line")],
    "demo": [("audioflow demo --out ./demo", "corpus, decode times, features, training, processing"),
             ("audioflow demo --out ./demo --train-steps 50", "a shorter training run")],
}


def _epilog(command: str) -> str:
    lines = [f"  [dim]# {what}[/dim]\n  {example.replace('[', chr(92) + '[')}" for example, what in EXAMPLES[command]]
    return "[bold]Examples[/bold]\n" + "\n".join(lines)


def _flags_untyped(params: list[Any]) -> None:
    """Flags shown as ``--resume``, not ``--resume <bool>`` (they take no value)."""
    for param in params:
        if getattr(param, "is_flag", False):  # typer's options are not click.Option subclasses
            param.metavar = ""


class _UntypedFlags:
    def format_help(self, ctx: Any, formatter: Any) -> None:  # typer's vendored click.Context, HelpFormatter
        _flags_untyped(self.get_params(ctx))  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)  # type: ignore[misc]


class _Command(_UntypedFlags, TyperCommand):
    pass


class _Group(_UntypedFlags, TyperGroup):
    pass


app = typer.Typer(help="audioflow: audio from files to what a model or a person needs.", cls=_Group,
                  epilog="[bold]Examples[/bold]\n  audioflow info talk.wav\n  audioflow process recordings/ -o out/ "
                         "-s vad,transcribe\n  audioflow steps\n  audioflow serve\n\nEach command's --help has "
                         "more. Shell completion: audioflow --install-completion",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


def command(name: str, cls: type[TyperCommand] = _Command, **kwargs):
    """``@app.command`` with the command's examples as its help's epilog."""
    return app.command(name, cls=cls, epilog=_epilog(name), **kwargs)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an AudioflowError (or an optional dependency's ModuleNotFoundError) into one red line and exit
    code 1 (``--debug`` shows the traceback)."""
    try:
        yield
    except (AudioflowError, ModuleNotFoundError) as e:
        error = _user_error(e)
        if _state["debug"] or error is None:
            raise
        _print_error(error)
        raise typer.Exit(1) from None


def _user_error(error: BaseException) -> AudioflowError | None:
    """What to tell the user: an AudioflowError as it is, a missing optional module as the extra to install;
    None for anything else (a bug: its traceback is shown)."""
    if isinstance(error, AudioflowError):
        return error
    if isinstance(error, ModuleNotFoundError):
        from .runtime.extras import as_missing_dependency

        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
        return as_missing_dependency(error, f"audioflow {command}".strip())
    return None


def _print_error(error: AudioflowError) -> None:
    # the message is literal text: 'audioflow[music]' must not be read as rich markup and vanish
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"audioflow {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    _state["debug"] = debug


@command("info")
def info(files: Annotated[list[str], typer.Argument(help="Audio files or URLs.", metavar="FILE...")]) -> None:
    """Show format, codec, rate, channels and duration of FILES without decoding them.

    A table on a terminal; tab-separated lines (a header first) when piped, paths whole. Unreadable files
    get an error row and exit code 1."""
    from .io import info as read_info

    header = ("file", "format", "codec", "rate (Hz)", "channels", "duration (s)", "bits")
    rows, failures = [], 0
    for name in files:
        try:
            i = read_info(name)
        except AudioflowError as e:
            if _state["debug"]:
                raise
            failures += 1
            rows.append((name, "error", e.message, "", "", "", ""))
            continue
        rows.append((name, i.format, i.codec, str(i.sample_rate), str(i.channels), f"{i.duration:.3f}",
                     str(i.bits_per_sample or "")))
    if console.is_terminal:
        table = Table(*header)
        for column in table.columns[:3]:  # a long path or error message wraps whole instead of being cut to "…"
            column.overflow = "fold"
        for column in table.columns[3:]:
            column.no_wrap = True
        for row in rows:
            table.add_row(*map(Text, row), style="red" if row[1] == "error" else None)  # paths as written
        console.print(table)
    else:  # for scripts: cut/awk/pandas read it, nothing is shortened to fit a width
        for row in (header, *rows):
            print("\t".join(value.replace("\t", " ") for value in row))
    if failures:
        raise typer.Exit(1)


@command("convert")
def convert(
    src: Annotated[str, typer.Argument(help="Input file or URL.")],
    dst: Annotated[str, typer.Argument(help="Output file or URL; the extension picks the format.")],
    sr: Annotated[Optional[int], typer.Option(help="Output sample rate in Hz (default: keep).")] = None,  # noqa: UP045
    mono: Annotated[bool, typer.Option("--mono/--keep-channels", help="Mix down to one channel.")] = False,
    format: Annotated[Optional[str], typer.Option(help="wav, flac, ogg, opus, mp3, m4a or aiff.")] = None,  # noqa: UP045
    subtype: Annotated[Optional[str], typer.Option(help="WAV/FLAC/AIFF sample format, e.g. PCM_24.")] = None,  # noqa: UP045
    bitrate: Annotated[Optional[int], typer.Option(help="Lossy bit rate in kbit/s.")] = None,  # noqa: UP045
) -> None:
    """Convert SRC to DST, resampling and mixing down on the way."""
    from .io import load, save

    with user_errors():
        y, rate = load(src, sr=sr, mono=mono)
        save(dst, y, rate, format=format, subtype=subtype, bitrate=bitrate)
    channels = 1 if y.ndim == 1 else y.shape[0]
    console.print(f"wrote {escape(dst)}: {y.shape[-1] / rate:.3f} s, {rate} Hz, {channels} channel(s)", highlight=False)


@command("pack")
def pack(
    source: Annotated[str, typer.Argument(help="A folder of audio, a CSV/JSONL manifest, or a list file.")],
    out: Annotated[str, typer.Argument(help="The dataset directory to create, or a URL (s3://bucket/ds.afds).")],
    field: Annotated[list[str], typer.Option("--field", "-f", help="name=kind[:key=value,...], e.g. "
                                             "audio=mel:n_mels=80, audio=waveform:sr=16000, label=int")],
    shard_size: Annotated[int, typer.Option(help="Rows per shard.")] = 1000,
    workers: Annotated[str, typer.Option(help="Encoding processes, or 'auto'.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset (atomically).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted pack from its last complete shard.")] = False,
    engine: Annotated[str, typer.Option(help="'local' (a process pool) or 'ray' (a task per shard on every node "
                                             "of a Ray cluster).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster ('auto': the running one).")  # noqa: UP045
                           ] = None,
) -> None:
    """Pack SOURCE into a dataset of typed fields in Arrow shards (audioflow.store), in a folder or a bucket."""
    from .store import parse_field, write

    with user_errors():
        fields = dict(parse_field(spec) for spec in field)
        if engine == "ray":
            from .ray import write_dataset

            manifest = write_dataset(source, out, fields, shard_size=shard_size, address=ray_address,
                                     overwrite=overwrite, resume=resume)
        elif engine == "local":
            manifest = write(source, out, fields, shard_size=shard_size,
                             num_workers=workers if workers == "auto" else int(workers), overwrite=overwrite,
                             resume=resume)
        else:
            raise ParameterError(f"unknown engine {engine!r}: 'local' or 'ray'")
    console.print(f"wrote {escape(out)}: {manifest['rows']} rows in {len(manifest['shards'])} shards, "
                  f"{manifest['audio_seconds'] / 3600:.3f} h of audio, {manifest['write_seconds']:.1f} s")
    for item in manifest["skipped"][:20]:
        console.print(f"[yellow]skipped[/] {escape(str(item['source']))}: {escape(str(item['reason']))}",
                      highlight=False)
    if len(manifest["skipped"]) > 20:
        console.print(f"[yellow]... and {len(manifest['skipped']) - 20} more (see manifest.json)[/]")


def stage_table() -> Table:
    """Every stage the registry knows (built-in and plugins) and what it does, in a line: shown by ``process
    --help``, ``process --interactive`` and ``audioflow steps``."""
    from .pipeline import STAGES

    table = Table("step", "what it does", title="steps (audioflow steps NAME: its options)")
    for name, stage in STAGES.items():
        table.add_row(name, Text(_first_sentence(stage.__doc__ or "")))
    return table


def option_table(name: str) -> Table:
    """One stage's options as the step language takes them: type, default, what it does with its unit,
    and the values allowed (from the stage's declarations, as the server's query parameters are)."""
    from .pipeline import STAGES

    stage = STAGES.find(name)
    table = Table("option", "type", "default", "what it does (unit; allowed)",
                  title=f"{name}: {_first_sentence(stage.__doc__ or '')}", title_justify="left")
    for key, option in stage.options.items():
        default = "-" if option.default is None else str(option.default).lower() if option.type == "bool" \
            else str(option.default)
        table.add_row(key, option.type, Text(default), Text(option.describe()))
    return table


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence.replace("``", "").replace(":mod:`", "").replace("`", "") + "."


class _ProcessCommand(_Command):
    """``process --help`` ends with the table of steps, read from the stage registry when help is asked for
    (so plugins show up, and plain commands do not import the stages)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        with console.capture() as captured:
            console.print(stage_table())
        if self.rich_markup_mode is None:  # click's plain formatter buffers the help: append to it
            formatter.write(captured.get())
        else:  # typer's rich help has already been printed
            console.print(stage_table())


def _ask_process_options(inputs: list[str], output: str | None, steps: list[str], workers: str,
                         resume: bool) -> tuple[list[str], str, list[str], str, bool]:
    """Prompt at the terminal for what ``process`` needs, with defaults shown (``--interactive``)."""
    from rich.prompt import Confirm, Prompt

    console.print(stage_table())
    inputs = Prompt.ask("input files or folders (space-separated)", default=" ".join(inputs) or ".").split()
    output = Prompt.ask("output folder", default=output or "audioflow-out")
    steps = [Prompt.ask("steps (comma-separated, name:option=value)",
                        default=",".join(steps) or "split,enhance:lufs=-23,analyze,features")]
    workers = Prompt.ask("worker processes", default=workers)
    resume = Confirm.ask("resume an earlier run into this folder?", default=resume)
    return inputs, output, steps, workers, resume


@command("process", cls=_ProcessCommand)
def process(
    inputs: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        help="Files, folders (recursive), CSV/JSONL manifests or URLs.", metavar="INPUT...")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="DIR",  # noqa: UP045
                                                  help="Output folder (results, manifest, files). Required "
                                                       "(unless --interactive).")] = None,
    steps: Annotated[Optional[list[str]], typer.Option("--steps", "-s", metavar="STEPS",  # noqa: UP045
                                                       help="name:option=value,... comma-separated or one --steps "
                                                            "each, e.g. split:method=silence,max=30,enhance:lufs=-23."
                                                            " Required (unless --interactive).")] = None,
    workers: Annotated[str, typer.Option(help="Worker processes, or 'auto' (from cores and memory).")] = "auto",
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda' for stages that hold models.")] = "auto",
    timeout: Annotated[float, typer.Option(help="Seconds one input may take before it is marked failed.")] = 7200.0,
    resume: Annotated[bool, typer.Option(help="Skip inputs the output's manifest lists as done; refused when they "
                                              "were done with other steps or options.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="With --resume, process failed inputs again.")] = False,
    engine: Annotated[str, typer.Option(help="'local' (a process pool) or 'ray'.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster ('auto': the running one).")  # noqa: UP045
                           ] = None,
    chunk_duration: Annotated[float, typer.Option(help="Inputs longer than this (seconds) are processed in "
                                                  "chunks of it, with bounded memory.")] = 600.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Ask for inputs, steps and options.")
                           ] = False,
) -> None:
    """Run STEPS over every input: one result JSON each, a manifest, a log, and a summary.

    Exit code 0 when at least one input succeeded (or all were done before), 1 when every input failed or
    on a usage error."""
    from .pipeline import run

    inputs, steps = list(inputs or []), list(steps or [])
    with user_errors():
        if interactive:
            inputs, output, steps, workers, resume = _ask_process_options(inputs, output, steps, workers, resume)
        if not inputs or not output or not steps:
            raise ParameterError("give INPUT..., --output and --steps (or --interactive)")
        _refuse_steps_as_inputs(inputs)
        summary = run(inputs, steps, output, engine=engine,
                      workers=workers if workers == "auto" else int(workers), device=device, timeout=timeout,
                      resume=resume, retry_failed=retry_failed, progress=progress, ray_address=ray_address,
                      chunk_duration=chunk_duration)
    table = Table("what", "value", title=f"audioflow process -> {output}")
    table.add_row("files", f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped (done before)")
    table.add_row("audio", f"{summary.audio_seconds / 3600:.3f} h in {summary.wall_seconds:.1f} s "
                           f"({summary.x_realtime:.1f}x realtime)")
    table.add_row("time per stage", ", ".join(f"{k} {v:.1f} s" for k, v in summary.stage_seconds.items()) or "-")
    table.add_row("workers, device, engine", f"{summary.workers or 'auto'}, {summary.device}, {summary.engine}")
    console.print(table)
    for source, error in summary.errors[:20]:
        console.print(f"[yellow]failed[/] {escape(str(source))}: {escape(str(error))}", highlight=False)
    if summary.failed > 20:
        console.print(f"[yellow]... and {summary.failed - 20} more (see manifest.jsonl)[/]")
    if summary.failed and not summary.ok:  # scripts and CI must notice a run that produced nothing
        err_console.print(f"[bold red]error:[/] every input failed ({summary.failed}); see "
                          f"{escape(output)}/manifest.jsonl",
                          highlight=False)
        raise typer.Exit(1)


def _refuse_steps_as_inputs(inputs: list[str]) -> None:
    """``--steps a b`` gives ``b`` to INPUT (an option takes one value): say so, not 'no such file'."""
    from .pipeline import STAGES

    for item in inputs:
        name = item.split(":", 1)[0].split(",", 1)[0]
        if name in STAGES and "://" not in item and not Path(item).exists():
            raise ParameterError(f"{item!r} is not an input but looks like a step: --steps takes one value, so give "
                                 "the steps as one comma-separated list (--steps split:max=30,enhance:lufs=-23) or "
                                 "one --steps each")


@command("steps")
def steps_command(
    names: Annotated[Optional[list[str]], typer.Argument(help="Steps to show the options of (default: list every "  # noqa: UP045
                                                         "step).", metavar="[NAME]...")] = None,
) -> None:
    """What every step of `process` does, or the options of the steps named: type, default, unit, bounds."""
    with user_errors():
        if not names:
            console.print(stage_table())
            console.print("options of a step: [bold]audioflow steps NAME[/]; use: "
                          "[bold]audioflow process INPUT -o OUT --steps NAME:option=value,...[/]")
            return
        for name in names:
            console.print(option_table(name))


@command("dedupe")
def dedupe(
    inputs: Annotated[list[str], typer.Argument(help="Folders, files or manifests to search for duplicates.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Where fingerprints are kept "  # noqa: UP045
                                                  "(reused next time). Default: ./.audioflow-fingerprints")] = None,
    threshold: Annotated[float, typer.Option(help="Similarity (0.5-1) from which two files are the same.")] = 0.85,
    near: Annotated[float, typer.Option(help="Similarity from which they are near-duplicates.")] = 0.65,
    workers: Annotated[str, typer.Option(help="Worker processes, or 'auto'.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the pairs as JSON lines.")] = False,
) -> None:
    """List duplicate and near-duplicate recordings (Chromaprint fingerprints)."""
    import json as json_module

    from .pipeline import dedupe as find

    with user_errors():
        pairs, summary = find(inputs, output or ".audioflow-fingerprints", threshold, near,
                              workers if workers == "auto" else int(workers), progress=not as_json)
    if as_json:
        for pair in pairs:
            print(json_module.dumps(pair))
        return
    table = Table("kind", "similarity", "file", "same as", title=f"{len(pairs)} pairs among "
                  f"{summary.ok + summary.skipped} fingerprinted files ({summary.failed} unreadable)")
    for pair in pairs:
        table.add_row(str(pair["kind"]), f"{pair['similarity']:.3f}", Text(str(pair["a"])), Text(str(pair["b"])))
    console.print(table)


@command("say")
def say(
    text: Annotated[Optional[str], typer.Argument(help="What to say ('-' reads standard input).")] = None,  # noqa: UP045
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE",  # noqa: UP045
                                                   help="Audio file to write (format from the suffix). "
                                                        "Required.")] = None,
    voice: Annotated[str, typer.Option(help="engine:name, e.g. piper:joe, espeak:en-us+f3, flite:slt, "
                                       "piper:/path/voice.onnx.")] = "piper:joe",
    rate: Annotated[float, typer.Option(help="Speaking rate relative to the voice's pace (1.0 normal).")] = 1.0,
    sample_rate: Annotated[Optional[int], typer.Option("--sr", help="Resample to this rate, Hz.")] = None,  # noqa: UP045
    list_voices: Annotated[bool, typer.Option("--list-voices", help="List the voices here and exit.")] = False,
) -> None:
    """Synthesize speech to an audio file (Piper by default; espeak-ng and flite too)."""
    from .io import save
    from .speech.synthesize import synthesize, voices

    if list_voices:
        for v in voices():
            console.print(escape(v["voice"]) + ("" if v["installed"] else "  (not installed)"), highlight=False)
        return
    with user_errors():
        if text is None or output is None:
            raise ParameterError("give TEXT and --output FILE (or --list-voices)")
        if text == "-":
            text = sys.stdin.read()
        audio = synthesize(text, voice, rate)
        samples, sr = audio.samples, audio.sample_rate
        if sample_rate and sample_rate != sr:
            from .io import resample

            samples, sr = resample(samples, sr, sample_rate), sample_rate
        save(output, samples, sr)
    console.print(f"wrote {escape(str(output))} ({len(samples) / sr:.2f} s at {sr} Hz, voice {escape(voice)})",
                  highlight=False)


@command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (without an API key only 127.0.0.1).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_file: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="File of API keys, one per line, each at least 16 characters (# comments and blank lines skipped).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes running decoders, models and encoders (a crash "
                                              "costs one request; the worker is replaced).")] = 2,
    queue_limit: Annotated[int, typer.Option(help="Requests in progress before answering 503.")] = 16,
    key_concurrency: Annotated[Optional[int], typer.Option(help="Requests in progress per API key before "  # noqa: UP045
                                                               "answering 429 (default: no per-key limit).")] = None,
    key_rate: Annotated[Optional[float], typer.Option(help="Requests per second each API key may make on "  # noqa: UP045
                                                           "average (429 beyond; default: no limit).")] = None,
    key_burst: Annotated[int, typer.Option(help="Requests a key may make at once after a quiet spell.")] = 10,
    header_timeout: Annotated[float, typer.Option(help="Seconds a connection may take to send a request's "
                                                       "headers before it is closed.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request body may pause before 408.")] = 30.0,
    jobs_dir: Annotated[Optional[Path], typer.Option(help="Folder for jobs (POST /v1/jobs) and their results, "  # noqa: UP045
                                                          "kept across restarts (default: "
                                                          "$XDG_STATE_HOME/audioflow/jobs).")] = None,
    max_jobs: Annotated[int, typer.Option(help="Jobs waiting or running at once before answering 429.")] = 32,
    max_duration: Annotated[float, typer.Option(help="Longest audio one request processes, seconds (longer: "
                                                    "POST /v1/jobs).")] = 1800.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, MB.")] = 100.0,
    max_request_mb: Annotated[float, typer.Option(help="Most memory one request may need, MB, estimated from "
                                                       "the header before decoding (else 413).")] = 1024.0,
    job_timeout: Annotated[float, typer.Option(help="Seconds one job may run before its worker is replaced "
                                                    "(504).")] = 1800.0,
    allowed_host: Annotated[Optional[list[str]], typer.Option(help="Host header values to accept (repeat; default: "  # noqa: UP045
                                                                  "the loopback names on loopback).")] = None,
    allowed_origin: Annotated[Optional[list[str]], typer.Option(help="Browser origins allowed besides the "  # noqa: UP045
                                                                    "server's own page (repeat).")] = None,
    allow_urls: Annotated[bool, typer.Option(help="Fetch audio from public http(s) URLs in JSON bodies.")] = False,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda' for the models.")] = "auto",
    whisper_model: Annotated[Optional[str], typer.Option(help="Whisper model directory or name (default: the "  # noqa: UP045
                                                         "packaged tiny.en; names download when online).")] = None,
) -> None:
    """Serve the stages over HTTP (+ OpenAI-compatible endpoints), a WebSocket stream and a web page."""
    from .runtime.extras import require

    with user_errors():
        require(("fastapi", "uvicorn", "multipart"), "audioflow serve", extra="serve")
        from .serve import ServeSettings, read_api_keys
        from .serve import serve as run_server

        settings = ServeSettings(host=host, port=port, api_keys=read_api_keys(api_key_file) if api_key_file else [],
                                 workers=workers, queue_limit=queue_limit, max_duration=max_duration,
                                 key_concurrency=key_concurrency, key_rate=key_rate, key_burst=key_burst,
                                 header_timeout=header_timeout, body_timeout=body_timeout,
                                 jobs_dir=str(jobs_dir) if jobs_dir else None, max_jobs=max_jobs,
                                 max_body_bytes=int(max_body_mb * 1024 * 1024), allow_urls=allow_urls,
                                 max_request_bytes=int(max_request_mb * 1024 * 1024), job_timeout=job_timeout,
                                 allowed_hosts=allowed_host or None, allowed_origins=allowed_origin or [],
                                 device=device, whisper_model=whisper_model)
        settings.check()
    if not settings.api_keys:
        console.print(f"[yellow]no API key: listening on {escape(host)} only[/] (give --api-key-file to open it up)")
    console.print(f"audioflow serve: web page http://{host}:{port}/  API docs http://{host}:{port}/docs")
    run_server(settings)


@command("demo")
def demo(
    out: Annotated[Optional[Path], typer.Option(help="Folder for the corpus (default: a temp folder).")] = None,  # noqa: UP045
    train_steps: Annotated[int, typer.Option(help="Steps of the keyword-classifier training demo.")] = 300,
) -> None:
    """Make a small corpus (speech, tones, noise, chords), write every format, read it back, time it."""
    from .demo import run_demo

    with user_errors():
        folder, rows, notes = run_demo(out)
    table = Table("file", "format", "duration (s)", "decode (ms)", "x realtime", title="audioflow.load")
    for row in rows:
        table.add_row(row.file, row.format, f"{row.duration:.2f}", f"{row.decode_ms:.2f}",
                      f"{row.realtime:,.0f}")
    console.print(table)
    from .demo import run_feature_demo

    with user_errors():
        steps = run_feature_demo(folder)
    table = Table("step (one batch of the FLAC clips, 16 kHz)", "output", "ms per clip", "x realtime",
                  title="audioflow.augment and audioflow.features (CPU)")
    for step in steps:
        table.add_row(step.step, step.shape, f"{step.ms_per_clip:.2f}", f"{step.realtime:,.0f}")
    console.print(table)
    from .demo import run_training_demo

    try:
        report = run_training_demo(folder, steps=train_steps)
    except RuntimeError as e:  # no espeak-ng: the keyword corpus cannot be spoken
        notes.append(f"training demo skipped: {e}")
    else:
        stats, settings = report.loader, report.loader["settings"]
        table = Table("what", "value", title="keyword classifier trained through AudioDataLoader (CPU)")
        table.add_row("data", f"{report.train_clips} spoken keywords (espeak-ng voices), {report.test_clips} held out")
        table.add_row("steps", f"{report.steps} (loss {report.first_loss:.2f} -> {report.last_loss:.2f}) in "
                               f"{report.seconds:.1f} s")
        table.add_row("accuracy on unheard voices", f"{100 * report.test_accuracy:.0f} %")
        table.add_row("loader throughput", f"{stats['clips_per_s']:.0f} clips/s, {stats['x_realtime']:.0f}x realtime")
        table.add_row("time the loop waited for data", f"{100 * stats['wait_fraction']:.1f} %")
        table.add_row("settings chosen", f"workers {settings['num_workers']}, prefetch {settings['prefetch_factor']}, "
                                         f"cache {settings['cache']}, transform {settings['transform']}")
        console.print(table)
    from .demo import run_processing_demo

    with user_errors():
        summary = run_processing_demo(folder, folder / "processed")
    table = Table("what", "value", title="audioflow process (split, enhance, analyze, features) on the corpus")
    table.add_row("files", f"{summary.ok} ok, {summary.failed} failed")
    table.add_row("audio", f"{summary.audio_seconds:.0f} s in {summary.wall_seconds:.1f} s "
                           f"({summary.x_realtime:.1f}x realtime, {summary.workers} workers)")
    table.add_row("time per stage", ", ".join(f"{k} {v:.1f} s" for k, v in summary.stage_seconds.items()))
    table.add_row("results", Text(f"{folder / 'processed'} (results/*.json, manifest.jsonl, features.parquet)"))
    console.print(table)
    from .demo import run_speech_demo

    try:
        speech_summary, transcript, voices = run_speech_demo(folder)
    except AudioflowError as e:  # a model package missing: the rest of the demo stands
        notes.append(f"speech demo skipped: {e}")
    else:
        table = Table("what", "value", title="audioflow process -s vad,diarize,transcribe (a synthesized dialogue)")
        table.add_row("voices", ", ".join(voices))
        table.add_row("audio", f"{speech_summary.audio_seconds:.0f} s in {speech_summary.wall_seconds:.1f} s "
                               f"({speech_summary.x_realtime:.1f}x realtime)")
        table.add_row("time per stage", ", ".join(f"{k} {v:.1f} s" for k, v in speech_summary.stage_seconds.items()))
        table.add_row("transcript", Text(transcript.strip()))
        table.add_row("files", Text(f"{folder / 'speech-processed'} (transcripts/*.json|txt|srt|vtt, rttm/)"))
        console.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    console.print(f"corpus (and an augmented speech clip, *.augmented.wav) left in [bold]{escape(str(folder))}[/]")
    console.print("speak: [bold]audioflow say \"Hello there\" -o hello.wav[/]")
    console.print("serve: [bold]audioflow serve[/], then open http://127.0.0.1:8000/ (record or upload, transcribe, "
                  "diarize, denoise; API docs at /docs)")


def main() -> None:
    """Entry point of the ``audioflow`` script."""
    try:
        app()
    except (AudioflowError, ModuleNotFoundError) as e:  # raised outside user_errors (an import at a command's top)
        error = _user_error(e)
        if "--debug" in sys.argv or error is None:
            raise
        _print_error(error)
        sys.exit(1)


if __name__ == "__main__":
    main()
