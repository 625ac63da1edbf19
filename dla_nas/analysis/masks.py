"""A dense model's masks beside the truth: a figure of a few test images, each as the image,
its true mask and the predicted one, the classes in fixed colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import Dataset
from ..data.config import IGNORE_INDEX
from ..files import atomic_path

# one colour a class (class 0, usually the background, black); the ignored pixels white
CLASS_COLOURS = ("#000000", "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
                 "#46f0f0", "#f032e6", "#bcf60c")


def mask_examples(model: nn.Module, data: Dataset, path: Path, count: int = 4) -> Path:
    """Draw ``count`` images of ``data``'s test split (those with the most pixels of
    classes other than 0: where there is something to find) with their true and predicted
    masks to ``path`` (PNG), atomically; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    test = data.test
    truth = test.labels.long().cpu()  # [N, H, W]
    found = ((truth != 0) & (truth != IGNORE_INDEX)).flatten(1).sum(1)
    chosen = found.argsort(descending=True, stable=True)[:count]
    device = next(model.parameters()).device
    images = test.images[chosen.to(test.images.device)].to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    model.eval()
    with torch.no_grad():
        predicted = model((images.float() / 255 - mean) / std).argmax(1).cpu().numpy()
    classes = len(data.class_names)
    colours = ListedColormap([CLASS_COLOURS[c % len(CLASS_COLOURS)] for c in range(classes)]
                             + ["#ffffff"])
    fig, axes = plt.subplots(len(chosen), 3, figsize=(7.5, 2.5 * len(chosen)), squeeze=False)
    for row, (i, image) in enumerate(zip(chosen.tolist(), images.cpu())):
        shown = image.permute(1, 2, 0).numpy().squeeze()
        true = np.where(truth[i] == IGNORE_INDEX, classes, truth[i]).astype(np.int64)
        for ax, (picture, title) in zip(axes[row], ((shown, "image"), (true, "truth"),
                                                    (predicted[row], "predicted"))):
            if title == "image":
                ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            else:
                ax.imshow(picture, cmap=colours, vmin=0, vmax=classes, interpolation="nearest")
            ax.set_title(f"{title} (test #{i})" if title == "image" else title, fontsize=9)
            ax.axis("off")
    fig.legend(handles=[Patch(color=CLASS_COLOURS[c % len(CLASS_COLOURS)], label=name)
                        for c, name in enumerate(data.class_names)],
               loc="lower center", ncol=min(classes, 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    with atomic_path(path) as part:
        fig.savefig(part, format="png", dpi=100)
    plt.close(fig)
    return path
