"""Record in trained weights the resolution of their training images, without retraining:

    python scripts/add_resolution.py weights/NAME.pt [--data ../shared/data/ham10000]

reads the sizes of the run's training images (weights/NAME/split.csv, or split.csv beside the weights) from their
headers and stores their median short side and size in the checkpoint's metadata, as `train` does
("training_resolution"), rewriting the file atomically. The weights are not touched. An .onnx beside the weights
gets the same metadata and the new file's sha256 (its graph is kept), so `predict` still runs it without timm.
"""


from weights_args import weights_and_data  # scripts/, on the path of a script run from it
from dermcli.data.dataset import load_dataset
from dermcli.data.images import training_resolution
from dermcli.data.split import load_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.inference.export import export_onnx, restamp_onnx
from dermcli.inference.runners import OnnxRunner, sha256
from dermcli.models.checkpoint import read_checkpoint, write_payload


def main() -> None:
    args = weights_and_data(__doc__)
    table = load_dataset(args.data)
    for weights in args.weights:
        rows = select(table, load_split(resolve_split_file(weights, None)), "train")
        resolution = training_resolution(rows["path"].tolist())
        onnx = weights.with_suffix(".onnx")
        exported = onnx.is_file() and OnnxRunner(onnx).meta.get("checkpoint_sha256") == sha256(weights)
        payload = read_checkpoint(weights)
        write_payload(weights, {**payload, "meta": {**payload["meta"], "training_resolution": resolution}})
        if exported:
            restamp_onnx(onnx, weights)
        elif onnx.is_file():  # it was not these weights': export them afresh
            export_onnx(weights, onnx)
        print(f"{weights}: trained on {len(rows)} images, median short side {resolution['short_side']}, "
              f"median size {resolution['size'][0]}x{resolution['size'][1]}" + (f"; {onnx} updated" if onnx.is_file() else ""))


if __name__ == "__main__":
    main()
