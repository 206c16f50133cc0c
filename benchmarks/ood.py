"""How well the out-of-distribution score separates HAM10000 images from images that are not dermoscopy.

    python benchmarks/ood.py weights/*.pt \
        --data ../shared/data/ham10000 --json benchmarks/ood.json     # prints the table of docs/explain-and-ood.md

Non-dermoscopy images are generated (flat colours, noise, text on white, synthetic scenes) plus crops of the
two photographs scikit-learn ships. Three scores are compared: dermcli's Mahalanobis distance, the energy
score (-logsumexp of the logits) and one minus the top softmax probability. The choice among them is read
off the validation rows (HAM10000 val vs the generated set with even seeds); the test rows (HAM10000 test vs
odd seeds) are reported, never used to choose.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("flat colour", "noise", "text on white", "synthetic scene", "photograph")
PER_KIND = 40  # images of each kind per half
PASS_RATES = (0.95, 0.98, 0.99, 0.995, 0.999)  # candidate shares of validation images below the threshold


def flat(rng, size):
    return Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))


def noise(rng, size):
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return Image.fromarray(np.clip(rng.normal(128, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8))


def text(rng, size):
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    words = ["patient", "report", "lesion", "invoice", "meeting", "total", "dermcli", "hello world", "2026-11-23"]
    for line in range(int(rng.integers(3, 12))):
        draw.text((int(rng.integers(5, 60)), 15 + 35 * line), " ".join(rng.choice(words, 4)), fill=(0, 0, 0),
                  font_size=int(rng.integers(14, 30)))
    return img


def scene(rng, size):
    """Sky gradient over ground, with a sun and a few houses or trees."""
    w, h = size
    horizon = int(h * rng.uniform(0.4, 0.7))
    sky = np.linspace(rng.integers(80, 180, 3), rng.integers(180, 256, 3), horizon)
    ground = np.linspace(rng.integers(30, 120, 3), rng.integers(60, 160, 3), h - horizon)
    img = Image.fromarray(np.repeat(np.concatenate([sky, ground])[:, None, :], w, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    x, y, r = int(rng.integers(0, w)), int(rng.integers(0, horizon // 2 + 1)), int(rng.integers(15, 40))
    draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 230, 120))
    for _ in range(int(rng.integers(2, 6))):
        x0, width, height = int(rng.integers(0, w - 40)), int(rng.integers(30, 90)), int(rng.integers(30, 120))
        draw.rectangle((x0, horizon - height, x0 + width, horizon), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def photograph(rng, size, photos):
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    ch, cw = int(h * rng.uniform(0.3, 1.0)), int(w * rng.uniform(0.3, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return Image.fromarray(photo[y:y + ch, x:x + cw]).resize(size)


def non_dermoscopy(folder: Path, half: int) -> dict[str, list[Path]]:
    """PER_KIND images of each kind, saved as JPEGs like a user's files; half 0 = even seeds, 1 = odd."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    makers = {"flat colour": flat, "noise": noise, "text on white": text, "synthetic scene": scene,
              "photograph": lambda rng, size: photograph(rng, size, photos)}
    paths = {}
    for kind, make in makers.items():
        paths[kind] = []
        for i in range(PER_KIND):
            seed = 2 * i + half
            path = folder / f"{kind.replace(' ', '_')}_{seed}.jpg"
            make(np.random.default_rng(seed), (600, 450)).save(path, quality=90)
            paths[kind].append(path)
    return paths


def scores(runner, images: np.ndarray) -> dict[str, np.ndarray]:
    from dermcli.models.outputs import probabilities

    logits, distance = runner.outputs(images)
    two_class = np.concatenate([np.zeros_like(logits), logits], axis=1) if logits.shape[1] == 1 else logits
    top = np.max(two_class, axis=1, keepdims=True)
    energy = top[:, 0] + np.log(np.exp(two_class - top).sum(axis=1))  # logsumexp: high = familiar
    probs = probabilities(logits, runner.meta["temperature"])
    probs = np.concatenate([1 - probs, probs], axis=1) if probs.shape[1] == 1 else probs
    return {"mahalanobis": distance, "energy": -energy, "max_softmax": 1 - probs.max(axis=1)}


def evaluate(weights: Path, data: Path, generated: list[dict[str, list[Path]]]) -> dict:
    from dermcli.data.cache import cached_images
    from dermcli.data.dataset import load_dataset
    from dermcli.data.images import load_rgb
    from dermcli.data.split import load_split, select
    from dermcli.evaluation.evaluate import resolve_split_file
    from dermcli.evaluation.metrics import roc_auc
    from dermcli.inference.loading import load_runner

    runner = load_runner(weights, "onnx")
    size, table = runner.meta["input_size"], load_dataset(data)
    split = load_split(resolve_split_file(weights, None))
    result = {"weights": str(weights), "threshold": runner.meta.get("ood_threshold")}
    distances = {}
    for half, part in enumerate(("val", "test")):
        ham = scores(runner, cached_images(select(table, split, part)["path"].tolist(), size))
        distances["HAM10000 " + part], rows = ham["mahalanobis"], {}
        for kind, paths in generated[half].items():
            other = scores(runner, np.stack([load_rgb(p, size) for p in paths]))
            distances.setdefault(f"non-dermoscopy {part}", []).extend(other["mahalanobis"])
            rows[kind] = {name: roc_auc(np.r_[np.zeros(len(ham[name])), np.ones(len(other[name]))], np.r_[ham[name], other[name]])
                          for name in ham}
            if result["threshold"] is not None:
                rows[kind]["flagged"] = float(np.mean(other["mahalanobis"] > result["threshold"]))
        rows["all"] = {name: float(np.mean([rows[k][name] for k in generated[half]])) for name in rows[next(iter(generated[half]))]}
        if result["threshold"] is not None:
            rows["HAM10000 " + part] = {"flagged": float(np.mean(ham["mahalanobis"] > result["threshold"]))}
        result[part] = rows
    result["operating_points"] = operating_points(distances)
    return result


def operating_points(distances: dict[str, np.ndarray]) -> list[dict]:
    """For each pass rate: the threshold it puts on the validation distances, and the share of each set above it.
    HAM10000 test is held-out dermoscopy; the non-dermoscopy test half is reported, never used to choose."""
    thresholds = {rate: float(np.quantile(distances["HAM10000 val"], rate)) for rate in PASS_RATES}
    return [{"pass_rate": rate, "threshold": t, **{name: float(np.mean(np.asarray(d) > t)) for name, d in distances.items()}}
            for rate, t in thresholds.items()]


def operating_table(results: list[dict]) -> str:
    """The flagged shares at each pass rate, the table under "Choosing the operating point" in docs/explain-and-ood.md."""
    names = ("HAM10000 val", "HAM10000 test", "non-dermoscopy val", "non-dermoscopy test")
    lines = ["| weights | pass rate | threshold | flagged: " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in results:
        lines += [f"| `{Path(r['weights']).name}` | {p['pass_rate']:.1%} | {p['threshold']:.4g} | " + " | ".join(f"{p[n]:.1%}" for n in names) + " |"
                  for p in r["operating_points"]]
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    """The table of docs/explain-and-ood.md: AUROC per kind (test half) for each score, and the share flagged at the threshold."""
    lines = ["| weights | score | " + " | ".join(KINDS) + " | all | flagged: HAM10000 test / non-dermoscopy |",
             "|---|---|" + "---|" * (len(KINDS) + 2)]
    for r in results:
        test = r["test"]
        for score in ("mahalanobis", "energy", "max_softmax"):
            flagged = (f"{test['HAM10000 test']['flagged']:.1%} / {test['all']['flagged']:.1%}"
                       if score == "mahalanobis" and r["threshold"] is not None else "")
            lines.append(f"| `{Path(r['weights']).name}` | {score} | " + " | ".join(f"{test[k][score]:.3f}" for k in KINDS)
                         + f" | {test['all'][score]:.3f} | {flagged} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = [non_dermoscopy(Path(tmp), half) for half in (0, 1)]
        results = [evaluate(w, args.data, generated) for w in args.weights]
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(markdown(results))
    print()
    print(operating_table(results))


if __name__ == "__main__":
    main()
