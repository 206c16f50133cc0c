"""Give a trained model's split the pixel digests of its training and validation images, without retraining:

    python scripts/record_digests.py weights/NAME.pt [--data ../shared/data/ham10000]

so `dermcli eval --split all` catches renamed copies of those images in an external set (runs trained since
the digests were added record them themselves). Only split.csv gains a column; the weights are not touched.
"""


from weights_args import weights_and_data  # scripts/, on the path of a script run from it
from dermcli.data.dataset import load_dataset
from dermcli.data.overlap import record_digests
from dermcli.data.split import load_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.models.checkpoint import read_checkpoint


def main() -> None:
    args = weights_and_data(__doc__)
    table = load_dataset(args.data)
    for weights in args.weights:
        source = resolve_split_file(weights, None)
        split, size = load_split(source), read_checkpoint(weights)["meta"]["input_size"]
        record_digests(source, split, [select(table, split, part, str(source)) for part in ("train", "val")], size)
        print(f"{source}: pixel digests at {size} px")


if __name__ == "__main__":
    main()
