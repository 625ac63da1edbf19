"""Properties of a genome that ``dla-nas pareto --by`` colours the search trials by, so the
plot shows where aggregation trees and IDA links pay.

Each property is a pure function of a genome's plain dict (``TrialRecord.genome``), whose
missing fields take the defaults of ``Genome`` and ``Stage`` themselves:

- ``aggregation``: "tree" when every stage is a tree, "none" when every stage is a chain,
  else "mixed";
- ``block``: the genome's block;
- ``ida``: "IDA edges" when a stage has extra IDA inputs (``ida_from``), else "level_root only"
  when a stage's input joins its root, else "no IDA".

``Colouring`` gives each value found a colour; ``run_style`` and ``svg_point`` give each run its
own marker (dots, squares, triangles) in ``pareto.png`` and ``pareto.html``.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..arch.genome import BLOCKS, Stage
from ..arch.genome import Genome as GenomeSpec

DEFAULT_BLOCK = GenomeSpec.__dataclass_fields__["block"].default

BY = ("aggregation", "block", "ida")
VALUES = (("aggregation", ("tree", "mixed", "none")), ("block", BLOCKS),
          ("ida", ("IDA edges", "level_root only", "no IDA")))  # each property's legend order
RUN_GREYS = ("#222222", "#666666", "#999999")  # each run's lines when the colours are a property's
GLYPHS = (("o", "&#9679;"), ("s", "&#9632;"), ("^", "&#9650;"), ("v", "&#9660;"))  # run markers

Genome = Mapping[str, Any]


def _stages(genome: Genome) -> list[Stage]:
    """The genome's stages, with the genome's own defaults for what the dict leaves out."""
    return [Stage(**st) for st in genome.get("stages", [])]


def aggregation(genome: Genome) -> str:
    """"tree" when every stage is a tree, "none" when every stage is a chain, else "mixed"."""
    trees = {st.is_tree for st in _stages(genome)}
    return "mixed" if len(trees) > 1 else "none" if trees == {False} else "tree"


def block(genome: Genome) -> str:
    """The genome's residual block."""
    return genome.get("block", DEFAULT_BLOCK)


def ida(genome: Genome) -> str:
    """"IDA edges" when a stage has a non-empty ``ida_from``, else "level_root only" when a
    stage has ``level_root`` (by default a tree's is true, a chain's false), else "no IDA"."""
    stages = _stages(genome)
    if any(st.ida_from for st in stages):
        return "IDA edges"
    if any(st.level_root for st in stages):
        return "level_root only"
    return "no IDA"


def genome_property(genome: Genome, by: str) -> str:
    """The value of property ``by`` (one of ``BY``) for ``genome``. For a backbone genome:
    its head's aggregation, its backbone (as the block), and whether its head iterates
    across levels (ida, dla_up); over a DLA genome (a dense DLA space's), that genome's."""
    if isinstance(genome.get("backbone"), dict):  # what the dense DLA space searched
        return genome_property(genome["backbone"], by)
    if "backbone" in genome:
        head = (genome.get("head") or {}).get("aggregation", "none")
        return {"aggregation": head, "block": genome["backbone"],
                "ida": "IDA edges" if head in ("ida", "dla_up") else "no IDA"}[by]
    functions: dict[str, Callable[[Genome], str]] = {
        "aggregation": aggregation, "block": block, "ida": ida}
    return functions[by](genome)


def value_counts(by: str, genomes: Iterable[Genome | None]) -> list[tuple[str, int]]:
    """How many of ``genomes`` (None skipped) have each value of ``by``, in a fixed order (the
    known values in the order of ``VALUES``, then any other, sorted)."""
    counts = Counter(genome_property(g, by) for g in genomes if g is not None)
    known = dict(VALUES)[by]
    order = [v for v in known if v in counts] + sorted(set(counts) - set(known))
    return [(v, counts[v]) for v in order]


@dataclass(frozen=True)
class Colouring:
    """The colour of each value of property ``by`` over the plotted genomes."""

    by: str
    entries: tuple[tuple[str, int, str], ...]  # value, how many genomes have it, colour

    @classmethod
    def of(cls, by: str, genomes: Iterable[Genome | None], palette: Sequence[str]) -> Colouring:
        """The values of ``by`` found in ``genomes``, coloured in turn from ``palette``."""
        counts = value_counts(by, genomes)
        return cls(by, tuple((v, n, palette[i % len(palette)]) for i, (v, n) in enumerate(counts)))

    def colour(self, genome: Genome | None, default: str) -> str:
        """The colour of ``genome``'s value; ``default`` for no genome or an unlisted value."""
        if genome is None:
            return default
        value = genome_property(genome, self.by)
        return next((c for v, _, c in self.entries if v == value), default)

    def legend_html(self) -> str:
        """The colours as a paragraph of ``pareto.html``."""
        return (f"\n<p>Colour: {html.escape(self.by)}: " + ", ".join(
            f'<span style="color:{c}">&#9679;</span> {html.escape(v)} ({n})'
            for v, n, c in self.entries) + "; shape: the run.</p>")


def run_style(i: int, by: str | None, palette: Sequence[str]) -> tuple[str, str]:
    """The colour and marker of run ``i``: a colour of ``palette`` and dots; with ``by`` (the
    colours are the property's), a grey and a marker of its own."""
    if by is None:
        return palette[i % len(palette)], "o"
    return RUN_GREYS[i % len(RUN_GREYS)], GLYPHS[i % len(GLYPHS)][0]


def svg_point(marker: str, cx: float, cy: float, size: float, attrs: str, inner: str) -> str:
    """A point as an SVG circle ("o"), square ("s") or triangle ("^", "v") of radius ``size``,
    with ``attrs`` and ``inner`` (its tooltip)."""
    if marker == "o":
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{size}" {attrs}>{inner}</circle>'
    if marker == "s":
        return (f'<rect x="{cx - size:.1f}" y="{cy - size:.1f}" width="{2 * size}" '
                f'height="{2 * size}" {attrs}>{inner}</rect>')
    tip = -size if marker == "^" else size
    corners = (f"{cx:.1f},{cy + tip:.1f} {cx - size:.1f},{cy - tip:.1f} "
               f"{cx + size:.1f},{cy - tip:.1f}")
    return f'<polygon points="{corners}" {attrs}>{inner}</polygon>'
