import json
from pathlib import Path

import torch
import yaml

# Keep tests reproducible and light on the 2-core CI machine.
torch.set_num_threads(2)

# a space that holds a hand design: plain_cnn_8_16_32 at 8 px
HAND_SPACE = {
    "name": "test-hand", "task": {"dataset": "digits", "resolution": 8},
    "proxy": {"epochs": 1, "batch_size": 128},
    "baselines": ["plain_cnn_8_16_32"],
    "genome": {"block": ["plain", "basic"],
               "stem": {"kernel": 3, "channels": [4, 8], "pool": [False, True]},
               "num_stages": 2,
               "stages": [{"channels": [8, 16], "aggregation": ["none", "tree"], "stride": 2,
                           "downsample": ["strided", "pool_last"], "level_root": False},
                          {"channels": [16, 32], "aggregation": ["none", "tree"], "stride": 2,
                           "downsample": ["strided", "pool_last"], "level_root": False}]},
}


def digits_data(resolution: int = 16) -> dict:
    """run.yaml's ``data`` section, as a search on digits at ``resolution`` writes it."""
    return {"name": "digits", "resolution": resolution, "in_chans": 1, "num_classes": 10,
            "class_names": [str(i) for i in range(10)]}


def write_space(tmp_path: Path, base: dict, **changes) -> Path:
    """``base`` with top-level keys replaced by ``changes``, written to ``tmp_path/space.yaml``."""
    raw = json.loads(json.dumps(base))
    raw.update(changes)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def write_folder(root: Path, counts: dict[str, int], size: int = 16, mode: str = "L",
                 fmt: str = "png", seed: int = 0) -> Path:
    """A folder dataset ``root/<class>/<i>.<fmt>`` with ``counts[class]`` images each, files
    named so that a sorted listing is sorted by class. Class k is a pattern of stripes with its
    own period plus noise, so a small CNN can learn it; ``mode`` "RGB" saves grey content as
    RGB (equal channels)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    for k, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        stripes = 127 + 100 * np.sin(2 * np.pi * grid / (2 + 2 * k))[None, :]
        for i in range(n):
            img = stripes + rng.normal(0, 20, (size, size))
            img = np.roll(img, rng.integers(size), axis=1).clip(0, 255).astype(np.uint8)
            im = Image.fromarray(img)
            (im.convert("RGB") if mode == "RGB" else im).save(folder / f"{i:04d}.{fmt}")
    return root
