import os

import numpy as np
import torch

from dermcli.data.cache import cache_dir, cache_key, cached_images, decode_images
from dermcli.models.registry import get_backend
from dermcli.training.features import features_key, frozen_features
from tests.conftest import write_image


def test_cached_images_equal_decoded_ones_and_files_changes_invalidate(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.jpg", i)) for i in range(4)]
    fresh = decode_images(paths, 28)
    first, second = cached_images(paths, 28), cached_images(paths, 28)
    assert np.array_equal(first, fresh) and np.array_equal(second, fresh)
    assert isinstance(second, np.memmap)  # the second call read the cache

    key = cache_key(paths, 28)
    assert cache_key(paths, 32) != key
    write_image(tmp_path / "2.jpg", 99)
    os.utime(paths[2], ns=(1, 1))
    assert cache_key(paths, 28) != key
    assert np.array_equal(cached_images(paths, 28)[2], decode_images([paths[2]], 28)[0])


def test_corrupt_image_cache_is_rebuilt(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.png", i, fmt="PNG")) for i in range(2)]
    cached_images(paths, 16)
    cache_file = cache_dir() / f"images_16px_{cache_key(paths, 16)}.npy"
    cache_file.write_bytes(b"garbage")
    assert np.array_equal(cached_images(paths, 16), decode_images(paths, 16))


def test_frozen_features_cache_matches_and_tracks_the_weights():
    backend = get_backend("resnet50")
    torch.manual_seed(0)
    frozen, _ = backend.split_frozen(backend.build(1, {}), "layer3")
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    computed = frozen_features(frozen, images, "imagenet", flips=True)
    reloaded = frozen_features(frozen, images, "imagenet", flips=True)
    assert all(torch.equal(a, b) for a, b in zip(computed.views, reloaded.views))
    with torch.no_grad():
        direct = frozen.eval()(torch.from_numpy(((images / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225])
                                                .astype(np.float32).transpose(0, 3, 1, 2)))
    assert torch.allclose(computed.views[0].float(), direct, atol=2e-2, rtol=1e-2)  # fp16 storage
    key = features_key(frozen, images, "imagenet")
    assert features_key(frozen, images, "caffe") != key
    with torch.no_grad():
        frozen[0].weight.mul_(1.01)
    assert features_key(frozen, images, "imagenet") != key
