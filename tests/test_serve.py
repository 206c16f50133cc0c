"""`dermcli serve` over real HTTP: the same answers as `predict --json`, the token, the limits and hostile input.

Each server is a real `dermcli serve` subprocess on a free localhost port (tests/served.py)."""

import base64
import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.served import EXAMPLES, REPO, cli_env, dermcli_command, multipart, serving

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SERVER_FIELDS = ("image", "model", "checkpoint_sha256", "disclaimer")  # what the server adds to predict's object, or names differently


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "cache"  # the session's cache (conftest.isolated_cache): ONNX exports made once


@pytest.fixture(scope="module")
def cnn(cache):
    with serving("--model", "cnn", cache=cache) as server:
        yield server


@pytest.fixture(scope="module")
def strict(cache):
    """Small limits, a token from the environment and one CORS origin."""
    with serving("--model", "cnn", "--max-upload-mb", "1", "--upload-timeout", "2", "--queue", "2", "--max-images", "3",
                 "--cors", "http://example.org", cache=cache, env={"DERMCLI_SERVE_TOKEN": TOKEN}) as server:
        yield server


def predict_json(cache, model: str, *images) -> list[dict]:
    result = subprocess.run(dermcli_command("predict", *map(str, images), "--model", model, "--json"), cwd=REPO, env=cli_env(cache),
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def without_server_fields(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in SERVER_FIELDS}


@pytest.mark.parametrize("model", ["cnn", "resnet50", "lite0"])
def test_predict_answers_what_predict_json_prints_for_every_shipped_model(cache, model):
    """Same figures, to the last bit: the examples in one request (one batch, as predict batches them) and one alone."""
    expected_all, expected_one = predict_json(cache, model, *EXAMPLES), predict_json(cache, model, EXAMPLES[0])
    weights = {"cnn": "cnn_ham10000_7class.pt", "resnet50": "resnet50_ham10000_binary.pt", "lite0": "lite0_ensemble_ham10000_7class.pt"}[model]
    digest = hashlib.sha256((REPO / "weights" / weights).read_bytes()).hexdigest()
    with serving("--model", model, cache=cache) as server:
        status_all, answer_all = server.predict(*EXAMPLES)
        status_one, answer_one = server.predict(EXAMPLES[0])
        _, described = server.json("GET", "/v1/model")
    assert status_all == status_one == 200 and len(answer_all) == len(EXAMPLES)
    assert [without_server_fields(a) for a in answer_all] == [without_server_fields(e) for e in expected_all]
    assert without_server_fields(answer_one) == without_server_fields(expected_one[0])
    assert [a["image"] for a in answer_all] == [e.name for e in EXAMPLES]
    assert {(a["model"], a["checkpoint_sha256"]) for a in answer_all} == {(model, digest)}
    assert answer_one["disclaimer"].startswith("Research use only")
    assert described["engine"] == "onnxruntime" and described["checkpoint_sha256"] == digest
    assert described["threshold"] == expected_one[0]["threshold"] and described["classes"] == list(expected_one[0]["probabilities"])


def test_model_health_docs_and_the_page(cnn):
    status, model = cnn.json("GET", "/v1/model")
    assert status == 200 and model["input_size"] == 28 and model["task"] == "multiclass"
    card = json.loads((REPO / "weights" / "cnn_ham10000_7class" / "eval" / "metrics.json").read_text())
    assert model["model_card"]["accuracy"] == card["multiclass"]["accuracy"] and model["model_card"]["malignant_roc_auc"] == card["binary"]["roc_auc"]
    assert cnn.json("GET", "/healthz") == (200, {"status": "ok"})
    status, spec = cnn.json("GET", "/openapi.json")
    assert status == 200 and {"/v1/predict", "/v1/explain", "/v1/model", "/healthz"} <= set(spec["paths"])
    for path in ("/docs", "/"):
        status, headers, page = cnn.request("GET", path)
        assert status == 200 and "default-src 'none'" in headers["content-security-policy"]
        assert not re.search(rb"""(src|href)=["']?(https?:)?//""", page), f"{path} loads something from elsewhere"
    assert b"Research use only" in cnn.request("GET", "/")[2]


def test_the_image_as_the_model_saw_it(cnn):
    status, answer = cnn.predict(EXAMPLES[0], query="?input_image=true")
    png = base64.b64decode(answer["input_image"].removeprefix("data:image/png;base64,"))
    assert status == 200 and Image.open(io.BytesIO(png)).size == (28, 28)


def test_explain_is_the_grad_cam_figure_as_png(cnn):
    body, content_type = multipart([(EXAMPLES[0].name, EXAMPLES[0].read_bytes())])
    status, headers, png = cnn.request("POST", "/v1/explain", body, {"Content-Type": content_type})
    assert status == 200 and headers["content-type"] == "image/png" and Image.open(io.BytesIO(png)).size[0] > 500
    body, content_type = multipart([(p.name, p.read_bytes()) for p in EXAMPLES[:2]])
    assert cnn.json("POST", "/v1/explain", body, {"Content-Type": content_type}) == (400, {"error": "explain takes one image, not 2"})


def test_without_torch_predict_still_runs_and_explain_is_a_501_naming_what_to_install(cnn, cache):
    """Also: --host 0.0.0.0 is warned about. The cnn fixture has already exported the ONNX graph this server runs."""
    no_torch = [sys.executable, "-c", ("import sys; sys.modules['torch'] = sys.modules['torchcam'] = None; "
                                       "from dermcli.__main__ import main; main()")]
    with serving("--model", "cnn", "--host", "0.0.0.0", cache=cache, launcher=no_torch) as server:
        status, answer = server.predict(EXAMPLES[0])
        body, content_type = multipart([(EXAMPLES[0].name, EXAMPLES[0].read_bytes())])
        status_explain, error = server.json("POST", "/v1/explain", body, {"Content-Type": content_type})
    assert status == 200 and answer["label"] == cnn.predict(EXAMPLES[0])[1]["label"]
    assert status_explain == 501 and "pip install torch torchcam" in error["error"]
    assert "warning: --host 0.0.0.0 serves every network" in server.log()


def test_the_token_is_required_on_every_v1_route_only(strict):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, response_headers, body = strict.request("GET", "/v1/model", headers=headers)
        assert status == 401 and response_headers["www-authenticate"] == "Bearer" and "bearer token" in json.loads(body)["error"]
        assert strict.predict(EXAMPLES[0], headers=headers)[0] == 401
    assert strict.request("GET", "/v1/model", headers=AUTH)[0] == 200 and strict.predict(EXAMPLES[0], headers=AUTH)[0] == 200
    assert strict.request("GET", "/healthz")[0] == 200 and strict.request("GET", "/")[0] == 200


def test_cors_only_for_the_origin_given(cnn, strict):
    preflight = {"Origin": "http://example.org", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    status, headers, _ = strict.request("OPTIONS", "/v1/predict", headers=preflight)
    assert status == 200 and headers["access-control-allow-origin"] == "http://example.org"
    assert "access-control-allow-origin" not in strict.request("OPTIONS", "/v1/predict", headers={**preflight, "Origin": "http://evil.example"})[1]
    assert "access-control-allow-origin" not in cnn.request("GET", "/v1/model", headers={"Origin": "http://example.org"})[1]


def png_header(width: int, height: int) -> bytes:
    """A PNG that promises width x height pixels and holds almost none: its header, a tiny IDAT, its end."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


JPEG = EXAMPLES[0].read_bytes()
HOSTILE = {
    "truncated JPEG": (JPEG[: len(JPEG) // 2], "image/jpeg", 422),
    "not an image": (b"%PDF-1.4 not an image at all", "image/png", 422),
    "decompression bomb": (png_header(100_000, 100_000), "image/png", 413),
    "more pixels than allowed": (png_header(12_000, 11_000), "image/png", 413),
    "wrong content type": (JPEG, "text/plain", 415),
    "no content type": (JPEG, None, 415),
    "empty body": (b"", "image/jpeg", 400),
    "malformed multipart": (b"--nope\r\nnot a part", "multipart/form-data; boundary=other", 400),
    "multipart without a file part": (b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n', "multipart/form-data; boundary=b", 400),
    "an empty file part": (multipart([("a.jpg", b"")], "b")[0], "multipart/form-data; boundary=b", 422),
    "too many images": (multipart([(f"{i}.jpg", JPEG) for i in range(4)], "b")[0], "multipart/form-data; boundary=b", 413),
    "CMYK JPEG": (encoded(Image.open(EXAMPLES[0]).convert("CMYK"), "JPEG"), "image/jpeg", 200),
    "16-bit PNG": (encoded(Image.fromarray(np.random.default_rng(0).integers(0, 65535, (60, 80), dtype=np.uint16)), "PNG"), "image/png", 200),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_gets_its_status_and_one_line_of_json(strict, case):
    body, content_type, expected = HOSTILE[case]
    status, headers, answer = strict.request("POST", "/v1/predict", body, {**AUTH, **({"Content-Type": content_type} if content_type else {})})
    assert status == expected, answer
    if expected != 200:
        assert headers["content-type"] == "application/json" and list(json.loads(answer)) == ["error"]
        assert b"\n" not in answer and b"Traceback" not in answer
    assert strict.healthy()


def request_head(server, length: int | str, extra: str = "") -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(strict):
    started = time.monotonic()
    response = strict.raw(request_head(strict, 50_000_000), read_timeout=30)
    assert status_of(response) == 413 and b"upload larger than" in response
    assert time.monotonic() - started < 2  # answered, not timed out at the 2 s upload limit: no body was awaited
    assert strict.healthy()


def test_a_streamed_body_is_counted_and_cut_off_at_the_limit(strict):
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: {strict.host}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n" % 100_000 + b"\0" * 100_000 + b"\r\n"
    response = strict.streamed(head, [chunk] * 12)  # 1.2 MB against the 1 MB limit, no length declared
    assert status_of(response) == 413 and strict.healthy()


def test_slow_and_short_uploads_are_cut_off_at_the_upload_timeout(strict):
    trickle = strict.raw(request_head(strict, 5_000) + JPEG[:100], then_wait=0, read_timeout=30)  # 100 of 5,000 bytes, then nothing
    assert status_of(trickle) == 408 and b"upload not received within 2 s" in trickle
    longer = strict.raw(request_head(strict, 10) + JPEG[:2_000], read_timeout=30)  # more than declared: the rest is no request
    assert status_of(longer) == 422
    assert strict.healthy()


def test_a_full_queue_answers_503_with_retry_after_and_recovers(strict):
    import socket

    held = [socket.create_connection((strict.host, int(strict.port))) for _ in range(2)]
    try:
        for sock in held:  # both admitted, each waiting for a body that does not come
            sock.sendall(request_head(strict, 5_000))
        time.sleep(0.5)
        status, headers, body = strict.request("POST", "/v1/predict", JPEG, {**AUTH, "Content-Type": "image/jpeg"})
        assert status == 503 and headers["retry-after"] == "1" and "busy" in json.loads(body)["error"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)  # the held requests' clients have left: their places are free again
    assert strict.predict(EXAMPLES[0], headers=AUTH)[0] == 200


def test_one_log_line_per_request_without_image_data_or_client_paths(strict):
    strict.request("GET", "/no/such%0Apath-injected")
    strict.predict(EXAMPLES[0], headers=AUTH)
    time.sleep(0.2)
    log = strict.log()
    assert re.search(r"^POST /v1/predict 200 [\d.]+ ms in \d+ B out \d+ B$", log, re.MULTILINE)
    assert re.search(r"^GET \(no such route\) 404 ", log, re.MULTILINE) and "injected" not in log
    assert "Traceback" not in log and max(len(line) for line in strict.lines) < 300
