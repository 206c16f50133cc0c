"""`dermcli serve`: the model behind an HTTP API and a one-page UI (dermcli.serving; FastAPI and uvicorn, the
dermcli[serve] extra). Safe by default: the loopback interface, no CORS, bounded uploads and queue."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dermcli.cli.console import log
from dermcli.cli.options import DEVICE, ENGINE, MODEL, TTA, WEIGHTS, ranged
from dermcli.core.errors import DermcliError
from dermcli.serving import TOKEN_VARIABLE


def serve(
    model: Annotated[Optional[str], MODEL] = None,
    weights: Annotated[Optional[Path], WEIGHTS] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 (every network) is warned about.")] = "127.0.0.1",
    port: Annotated[int, ranged("port", "Port to listen on (0: any free port, printed).")] = 8000,
    token: Annotated[Optional[str], typer.Option(envvar=TOKEN_VARIABLE, show_default=False,
                                                 help="Require `Authorization: Bearer TOKEN` on every /v1/ route.")] = None,
    cors: Annotated[Optional[str], typer.Option(help="Let pages from this origin (e.g. https://example.org) call the API; default: none.")] = None,
    tta: Annotated[Optional[str], TTA] = None,
    engine: Annotated[str, ENGINE] = "auto",
    device: Annotated[str, DEVICE] = "auto",
    max_upload_mb: Annotated[float, ranged("max-upload-mb", "Largest request body, in MB; larger ones get 413.")] = 20.0,
    max_images: Annotated[int, ranged("max-images", "Most images in one /v1/predict request.")] = 16,
    queue: Annotated[int, ranged("queue", "Requests admitted at once (receiving or waiting for the model); more get 503 and Retry-After.")] = 8,
    upload_timeout: Annotated[float, ranged("upload-timeout", "Seconds a client has to send its whole body; slower ones get 408.")] = 30.0,
):
    """Serve the model over HTTP: POST /v1/predict (predict --json's answer), /v1/explain, GET /v1/model, a page at /."""
    try:
        import fastapi  # noqa: F401  the web stack is an extra: say so in one line rather than fail on import
        import uvicorn  # noqa: F401
    except ImportError:
        raise DermcliError('serve needs FastAPI and uvicorn: pip install "dermcli[serve]"') from None
    from dermcli.serving.server import serve as run_server
    from dermcli.serving.service import Service
    from dermcli.serving.uploads import Limits

    service = Service(weights, model, engine, tta, device, log=log)
    limits = Limits(round(max_upload_mb * 1_000_000), max_images, upload_timeout, queue)
    run_server(service, host, port, limits, token or None, cors, log)
