"""Request bodies under limits: the size (declared and counted), the time to send them, the images in one, and
the queue of requests admitted. Uploads stay in memory: a multipart body is parsed by the standard library's
email parser from bytes, never spooled to a temporary file as form parsers do past a megabyte."""

import asyncio
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import PurePath

from starlette.requests import ClientDisconnect

from dermcli.serving.service import Upload

RAW_TYPES = ("image/", "application/octet-stream")  # a raw body: one image


class ClientError(Exception):
    """A request the server refuses: its status and one line for the client."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Limits:
    max_upload: int = 20_000_000  # bytes of one request's body
    max_images: int = 16  # images in one /v1/predict request
    upload_timeout: float = 30.0  # seconds to receive a whole body: a trickling upload is cut off
    queue: int = 8  # requests admitted at once (receiving, waiting for the model or running); more get 503


DEFAULT_LIMITS = Limits()


class Gate:
    """At most `capacity` requests admitted at once. One event loop runs every request, so a counter is enough."""

    def __init__(self, capacity: int):
        self.capacity, self.admitted = capacity, 0

    def __enter__(self):
        if self.admitted >= self.capacity:
            raise ClientError(503, f"busy: {self.capacity} requests already queued; retry shortly", {"Retry-After": "1", "Connection": "close"})
        self.admitted += 1
        return self

    def __exit__(self, *exc):
        self.admitted -= 1


def _closing(status: int, message: str) -> ClientError:
    # the rest of the body may still be on its way: the connection cannot carry another request
    return ClientError(status, message, {"Connection": "close"})


async def read_body(request, limits: Limits) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be too large (its Content-Length, else the bytes
    counted as they arrive) and with 408 when it takes longer than the upload timeout."""
    too_large = f"upload larger than the {limits.max_upload:,} bytes allowed"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_upload:
        raise _closing(413, too_large)
    chunks, size = [], 0

    async def receive():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_upload:
                raise _closing(413, too_large)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), limits.upload_timeout)
    except asyncio.TimeoutError:
        raise _closing(408, f"upload not received within {limits.upload_timeout:g} s") from None
    except ClientDisconnect:  # nobody reads this answer; it only ends the request quietly
        raise ClientError(400, "the client left before sending its whole body") from None
    if not size:
        raise ClientError(400, "empty body: send an image (multipart/form-data or a raw image body)")
    return b"".join(chunks)


def multipart_files(content_type: str, body: bytes) -> list[Upload]:
    """The file parts of a multipart/form-data body (form fields without a file name are ignored)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not message.is_multipart() or message.defects:
        raise ClientError(400, "malformed multipart body")
    files = []
    for part in message.iter_parts():
        if part.get_filename() is not None:
            # the file name is only echoed back; a path in it is cut to its last part
            files.append(Upload(PurePath(part.get_filename().replace("\\", "/")).name or "upload", part.get_payload(decode=True) or b""))
    if not files:
        raise ClientError(400, "the multipart body holds no file part")
    return files


def is_multipart(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is multipart (else a raw image); 415 when it is neither: checked before
    the body is read."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != "multipart/form-data" and not kind.startswith(RAW_TYPES):
        raise ClientError(415, f"Content-Type {kind or '(none)'!r} is not an image, application/octet-stream or multipart/form-data")
    return kind == "multipart/form-data"


def uploads(content_type: str | None, body: bytes, limits: Limits) -> list[Upload]:
    """The images of a request body: the file parts of a multipart body, or a raw image body."""
    files = multipart_files(content_type, body) if is_multipart(content_type) else [Upload("upload", body)]
    if len(files) > limits.max_images:
        raise ClientError(413, f"{len(files)} images in one request, more than the {limits.max_images} allowed")
    if empty := [f.name for f in files if not f.data]:
        raise ClientError(422, f"{empty[0]}: empty file")
    return files
