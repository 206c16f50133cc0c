"""Do the shipped models give the same answer on large copies of the bundled examples? And what does a large JPEG cost?

    python benchmarks/resolution.py --json benchmarks/resolution.json

Each bundled example (200x150, the training images' resolution) is enlarged x3 (600x450, the real HAM10000 files'
size) and x20 (4000x3000, a dermatoscope's photograph) three ways: every pixel a k x k block of that pixel ("blocks"),
the same blocks with zero-mean texture inside them, detail a 200x150 image cannot hold ("texture"), and a smooth
bicubic interpolation that adds no detail ("bicubic"); each saved as a JPEG, as a user's file would be. Each copy is
predicted with the step that brings it down to the training images' resolution and with --native-resolution (resized
straight to the input size, as before), against the answer on the example itself; the example merely re-saved as a
JPEG shows what the compression alone changes. Then the time to decode a 6000x4000 JPEG into a 224x224 input, with
and without the JPEG draft mode.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dermcli import PROJECT_ROOT

FACTORS = (3, 20)
DETAIL = 24  # amplitude of the texture added inside each block, in 8-bit levels
QUALITY = 95


def enlarge(image: np.ndarray, k: int, detail: int = 0, seed: int = 0) -> np.ndarray:
    """`image` (H, W, 3) uint8 k times larger: each pixel a k x k block whose mean is that pixel, so a box filter
    gives `image` back exactly; `detail` adds a texture of that amplitude inside each block that sums to zero."""
    h, w, _ = image.shape
    big = np.repeat(np.repeat(image.astype(np.int16), k, 0), k, 1)
    if detail:
        half = k * k // 2
        signs = np.r_[np.ones(half), -np.ones(half), np.zeros(k * k - 2 * half)].astype(np.int16)
        blocks = np.random.default_rng(seed).permuted(np.broadcast_to(signs, (h, w, k * k)), axis=2)
        pattern = blocks.reshape(h, w, k, k).transpose(0, 2, 1, 3).reshape(h * k, w * k, 1)
        amplitude = np.minimum(detail, np.minimum(image, 255 - image)).astype(np.int16)  # never clipped: the mean holds
        big += np.repeat(np.repeat(amplitude, k, 0), k, 1) * pattern
    return big.astype(np.uint8)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def compare(reference: list, got: list) -> dict:
    p0, p1 = (np.array([list(p.probabilities.values()) for p in ps]) for ps in (reference, got))
    return {"labels_agree": sum(a.label == b.label for a, b in zip(reference, got)),
            "max_abs_probability_change": float(np.abs(p1 - p0).max()),
            "mean_malignant_score_change": float(np.mean([abs(a.malignant_score - b.malignant_score) for a, b in zip(reference, got)])),
            "unusual": sum(bool(p.unusual) for p in got)}


ENLARGED = {"blocks": lambda image, k: enlarge(image, k), "texture": lambda image, k: enlarge(image, k, DETAIL),
            "bicubic": lambda image, k: np.asarray(Image.fromarray(image).resize((image.shape[1] * k, image.shape[0] * k),
                                                                                 Image.Resampling.BICUBIC))}


def jpeg_copies(folder: Path, examples: list[Path], k: int, way: str) -> list[Path]:
    copies = [folder / f"{p.stem}_x{k}_{way}.jpg" for p in examples]
    for source, copy in zip(examples, copies):
        Image.fromarray(ENLARGED[way](pixels(source), k)).save(copy, quality=QUALITY)
    return copies


def predictions(folder: Path, examples: list[Path]) -> dict:
    from dermcli.inference.predict import SHIPPED, predict

    results = {}
    for model in SHIPPED:
        reference, _ = predict([str(p) for p in examples], model=model)
        resaved, _ = predict([str(p) for p in jpeg_copies(folder, examples, 1, "blocks")], model=model)
        rows = {"examples": len(examples), "unusual_at_200x150": sum(bool(p.unusual) for p in reference),
                "200x150 re-saved (JPEG alone)": compare(reference, resaved)}
        for k in FACTORS:
            for way in ENLARGED:
                copies = jpeg_copies(folder, examples, k, way)
                for step, native in (("resampled", False), ("native", True)):
                    got, _ = predict([str(c) for c in copies], model=model, native_resolution=native)
                    rows[f"x{k} {way}, {step}"] = compare(reference, got)
        results[model] = rows
    return results


def done_check(folder: Path, example: Path) -> dict:
    """The default model on copies of one example, against its answer at 200x150: lossless 600x450 and 6000x4500
    ones (each pixel a block), a 6000x4000 JPEG (bicubic, stretched to 3:2), and the example re-saved as a JPEG."""
    from dermcli.inference.predict import predict

    image = pixels(example)
    copies = {"600x450.png": enlarge(image, 3), "6000x4500.png": enlarge(image, 30), "200x150.jpg": image,
              "6000x4000.jpg": np.asarray(Image.fromarray(image).resize((6000, 4000), Image.Resampling.BICUBIC))}
    for name, copy in copies.items():
        Image.fromarray(copy).save(folder / name, quality=QUALITY, compress_level=1)
    reference, got = predict([str(example)])[0][0], predict([str(folder / name) for name in copies])[0]
    return {name: {"label": g.label, "reference_label": reference.label, "resampled": g.resampled,
                   "max_abs_probability_change": max(abs(g.probabilities[n] - reference.probabilities[n]) for n in g.probabilities)}
            for name, g in zip(copies, got)}


def decode_cost(folder: Path, example: Path, repeats: int = 5) -> dict:
    """Milliseconds (median of `repeats`) to turn a 6000x4000 JPEG into a 224x224 input."""
    from dermcli.data.images import load_rgb

    big = folder / "6000x4000.jpg"
    Image.fromarray(enlarge(pixels(example), 30, DETAIL)[:4000]).save(big, quality=QUALITY)

    def full_decode():  # no draft: every pixel decoded, then the same box filter and resize
        with Image.open(big) as img:
            return img.convert("RGB").resize((225, 150), Image.Resampling.BOX).resize((224, 224), Image.Resampling.BILINEAR)

    ways = {"draft + box to 225x150 (the step)": lambda: load_rgb(big, 224, 150),
            "draft, resized straight (--native-resolution)": lambda: load_rgb(big, 224),
            "full decode + box to 225x150 (no draft)": full_decode}
    cost = {}
    for name, decode in ways.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decode()
            times.append((time.perf_counter() - start) * 1000)
        cost[name] = round(statistics.median(times), 1)
    return {"file_mb": round(big.stat().st_size / 1e6, 1), "ms": cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    examples = sorted((PROJECT_ROOT / "examples").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {"factors": FACTORS, "detail": DETAIL, "jpeg_quality": QUALITY, "predictions": predictions(folder, examples),
                  "done_check": done_check(folder, examples[0]), "decode_6000x4000": decode_cost(folder, examples[0])}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
