import json
from pathlib import Path

import torch
import yaml

# Keep tests reproducible and light on the 2-core CI machine.
torch.set_num_threads(2)


def write_space(tmp_path: Path, base: dict, **changes) -> Path:
    """``base`` with top-level keys replaced by ``changes``, written to ``tmp_path/space.yaml``."""
    raw = json.loads(json.dumps(base))
    raw.update(changes)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
