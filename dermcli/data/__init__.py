"""Data: image decoding, data-set formats, lesion-level splits and caches."""
