"""MkDocs hooks: the command-line reference is written from ``dla-nas``'s own parser, the
Python API page from the packages' ``__all__`` (with mkdocstrings reading the docstrings) and
the changelog page from ``CHANGELOG.md``, at build time, so none can drift from the source."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]


def cli_reference() -> str:
    """One section per command: its description and its ``--help`` as argparse prints it."""
    from dla_nas.cli.parser import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: the same on every build
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    lines = ["# Command line", "",
             "Generated from `dla-nas`'s own argument parser when the site is built.", "",
             "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in sub.choices.items():
        lines += [f"## `dla-nas {name}`", "", f"{helps.get(name, '').capitalize()}.", "",
                  "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


PACKAGES = [("dla_nas", "the package"), ("dla_nas.arch", "genomes, models and cost"),
            ("dla_nas.backbones", "backbones"), ("dla_nas.data", "data"),
            ("dla_nas.train", "training"), ("dla_nas.search", "search"),
            ("dla_nas.analysis", "fronts, confirm, export"),
            ("dla_nas.weights", "pretrained weights")]
API_INTRO = """# Python API

What a user imports is listed in `dla_nas.__all__` and in the `__all__` of the subpackages
below; other module paths are private and may change between minor versions. The subpackages
import their names on first use, so `import dla_nas` loads neither torch, Optuna nor Ray.

```python
import dla_nas

model = dla_nas.build_model("dla34_cifar", num_classes=10)  # a zoo name, a genome or a YAML
print(dla_nas.genome_cost(dla_nas.Genome.from_yaml("my-genome.yaml"), (3, 64, 64), 10))
```
"""


def api_reference() -> str:
    """One mkdocstrings entry per public name, under the package that lists it (a name
    listed again by a later package points back to the first)."""
    lines, seen = [API_INTRO], {}
    for package, title in PACKAGES:
        module = importlib.import_module(package)
        lines += [f"## `{package}`: {title}", ""]
        for name in module.__all__:
            obj = getattr(module, name)
            where = f"{getattr(obj, '__module__', package)}.{name}"
            if name.startswith("__") or not callable(obj):
                lines.append(f"- `{package}.{name}`")
            elif where in seen:
                lines.append(f"- `{package}.{name}`: the same as `{seen[where]}` above")
            else:
                seen[where] = f"{package}.{name}"
                lines += [f"::: {where}", "    options:", "      heading_level: 3", ""]
        lines.append("")
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    files.append(File.generated(config, "reference/api.md", content=api_reference()))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files
