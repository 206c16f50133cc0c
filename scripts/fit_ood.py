"""Give trained weights the out-of-distribution statistics of dermcli.ood without retraining:

    python scripts/fit_ood.py weights/NAME.pt [--data ../shared/data/ham10000]

fits them on the run's own training split (weights/NAME/split.csv, or split.csv beside the weights), sets the
threshold on its validation split and rewrites the file atomically. The weights themselves are not touched,
so predictions do not change.
"""


from weights_args import weights_and_data  # scripts/, on the path of a script run from it
from dermcli.training.unusual import add_statistics


def main() -> None:
    args = weights_and_data(__doc__)
    for weights in args.weights:
        added = add_statistics(weights, args.data)
        print(f"{weights}: distance threshold {added['ood_threshold']:.3f} ({added['ood_pass_rate']:.0%} of validation below)")


if __name__ == "__main__":
    main()
