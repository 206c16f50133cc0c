"""The ground floor: errors, labels and the malignant view, option ranges, atomic files."""
