"""The HTTP routes of `dermcli serve` (FastAPI): the page, the JSON API under /v1/, /healthz and offline docs.

Every refusal is a 4xx (or 503) with one line of JSON, {"error": "..."}; a bug of ours is a 500 saying only that,
its traceback going to the server's log. The model runs in one worker thread, so the event loop keeps receiving
and refusing requests while it works; the Gate bounds how many wait for it."""

import asyncio
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from dermcli.data.images import ImageError, TooManyPixels
from dermcli.inference.predict import DISCLAIMER
from dermcli.serving.service import ExplainUnavailable, Service
from dermcli.serving.uploads import DEFAULT_LIMITS, ClientError, Gate, Limits, is_multipart, read_body, uploads

# The page and the docs carry their own styles and scripts: nothing is fetched from elsewhere.
PAGE_POLICY = "default-src 'none'; connect-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
IMAGE_BODY = {"requestBody": {"required": True, "description": "One image as a raw body, or multipart/form-data with one "
                              "or more file parts", "content": {
                                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                                      "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
                                  "image/*": {"schema": {"type": "string", "format": "binary"}},
                                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


def static_page(name: str) -> HTMLResponse:
    return HTMLResponse(files("dermcli.serving").joinpath(name).read_text(encoding="utf-8"), headers={"Content-Security-Policy": PAGE_POLICY})


def bearer_check(token: str | None):
    """A dependency refusing a request without `Authorization: Bearer TOKEN` (none when no token is set)."""
    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
            raise ClientError(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"})
    return check


def add_error_handlers(app: FastAPI, log) -> None:
    @app.exception_handler(ClientError)
    async def refused(request: Request, e: ClientError):
        return error(e.status, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        return error(422, f"{'.'.join(map(str, first['loc']))}: {first['msg']}")

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception):
        log(f"internal error answering {request.method}: {type(e).__name__}: {e}")  # the path is the client's: not logged
        return error(500, "internal error (see the server's log)")


def create_app(service: Service, limits: Limits = DEFAULT_LIMITS, token: str | None = None, cors: str | None = None,
               log=lambda msg: None, hosts: list[str] | None = None) -> FastAPI:
    """The app serving `service` under `limits`; `token`: the bearer token every /v1/ route requires; `cors`: the one
    origin whose pages may call the API (none by default); `log`: where the one line per request goes."""
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dermcli-model")  # one model, one forward pass at a time
    gate = Gate(limits.queue)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="dermcli serve", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description=f"Skin-lesion classifier {service.name}. {DISCLAIMER}")
    add_error_handlers(app, log)
    if hosts:  # a Host header naming another machine (DNS rebinding) gets a 400
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[cors], allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    api = APIRouter(prefix="/v1", dependencies=[Depends(bearer_check(token))])

    async def run_on_model(request: Request, work):
        """Admit the request, receive its body, then parse its images and run `work(images)` on the model's thread
        (parsing 20 MB takes a second: the event loop goes on meanwhile)."""
        with gate:
            content_type = request.headers.get("content-type")
            is_multipart(content_type)
            body = await read_body(request, limits)
            try:
                return await asyncio.get_running_loop().run_in_executor(worker, lambda: work(uploads(content_type, body, limits)))
            except TooManyPixels as e:
                raise ClientError(413, str(e)) from None
            except ImageError as e:
                raise ClientError(422, str(e)) from None

    @api.post("/predict", openapi_extra=IMAGE_BODY, summary="Classify one image (or several, up to the limit)")
    async def predict(request: Request, input_image: bool = False):
        """`predict --json`'s object for the image (a list of them for several), with the model, the checkpoint's
        sha256 and the disclaimer; `input_image=true` adds the image as the model saw it (a PNG data URL)."""
        found = await run_on_model(request, lambda images: service.predict(images, input_image))
        return found[0] if len(found) == 1 else found

    @api.post("/explain", openapi_extra=IMAGE_BODY, response_class=Response, summary="Grad-CAM figure of one image (PNG)",
              responses={200: {"content": {"image/png": {}}}, 501: {"description": "PyTorch or torchcam is not installed"}})
    async def explain(request: Request):
        def one(images):
            if len(images) != 1:
                raise ClientError(400, f"explain takes one image, not {len(images)}")
            return service.explain(images[0])
        try:
            return Response(await run_on_model(request, one), media_type="image/png")
        except ExplainUnavailable as e:
            raise ClientError(501, str(e)) from None

    @api.get("/model", summary="Classes, input size, threshold and the model card's headline figures")
    async def model():
        return service.describe()

    app.include_router(api)

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return static_page("page.html")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        return static_page("docs.html")

    app.add_middleware(RequestLog, log=log, routes={route.path for route in [*app.routes, *api.routes] if hasattr(route, "path")})
    return app


class RequestLog:
    """One log line per request: method, route, status, latency and bytes in and out; never a body, nor a path
    that is not a route (a client could write anything there)."""

    def __init__(self, app, log, routes: set[str]):
        self.app, self.log, self.routes = app, log, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, seen = time.perf_counter(), {"status": 500, "in": 0, "out": 0}

        async def counted_receive():
            message = await receive()
            seen["in"] += len(message.get("body", b""))
            return message

        async def counted_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "(no such route)"
            self.log(f"{scope['method']} {route} {seen['status']} {1000 * (time.perf_counter() - start):.1f} ms "
                     f"in {seen['in']} B out {seen['out']} B")
