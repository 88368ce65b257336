"""Everyone's labels per image: vote counts, fractions, a consensus and its agreement (Galaxy Zoo style).

One vote per contributor per image (their latest): a flood from one person counts once.
Contributors are weighted by their skill on gold images (Laplace-smoothed accuracy, as
Zooniverse's aggregation weights user skill), so a careless labeller moves fractions less.
A gold image's consensus is its gold label whatever the votes say, so no contributor can
outvote the gold set. Disagreements are kept and shown, never overwritten.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from astroclassify.store import Store
from astroclassify.store.contributions import Contributions

__all__ = ["ImageVotes", "aggregate_votes", "contributor_weights"]

PRIOR_WEIGHT = 0.5  # a contributor never checked on gold: weight of a coin-flip labeller's evidence


@dataclass(frozen=True)
class ImageVotes:
    """The labels one image (by decoded pixels) received, aggregated."""

    pixels_sha256: str
    stored_name: str
    counts: dict[str, int]  # raw votes per answer (one per contributor)
    fractions: dict[str, float]  # skill-weighted vote fractions
    consensus: str
    agreement: float  # the consensus answer's weighted fraction
    contributors: int
    gold: str | None = None  # the gold label, when this image is in the gold set
    credits: list[str] = field(default_factory=list)
    image_sha256: str = ""  # of the stored file's bytes
    from_elsewhere: bool = False  # some vote came from another installation or an imported collection

    @property
    def disputed(self) -> bool:
        """More than one answer, or votes against the gold label."""
        return len(self.counts) > 1 or (self.gold is not None and set(self.counts) != {self.gold})


def contributor_weights(votes: Mapping[tuple[str, str], str], gold: Mapping[str, str]) -> dict[str, float]:
    """Each contributor's (correct + 1) / (checked + 2) on gold images; ``PRIOR_WEIGHT`` without any."""
    right: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    for (image, who), answer in votes.items():
        if image in gold:
            seen[who] += 1
            right[who] += int(answer == gold[image])
    contributors = {who for _, who in votes}
    return {who: (right[who] + 1) / (seen[who] + 2) if seen[who] else PRIOR_WEIGHT for who in contributors}


def aggregate_votes(
    store: Store, *, question: str = "class", gold: Mapping[str, str] | None = None
) -> list[ImageVotes]:
    """Aggregate every contribution to ``question`` per image, this installation's new corrections included.

    ``gold`` maps images to gold labels, each image named by the digest of its decoded pixels
    or of its file's bytes (a model's gold set records the latter).
    """
    from astroclassify.sharing.contributions import publish_local_labels

    publish_local_labels(store)  # corrections made since the last read count too
    latest: dict[tuple[str, str], tuple] = {}
    names: dict[str, tuple[str, str]] = {}
    credits: dict[str, set[str]] = defaultdict(set)
    elsewhere: set[str] = set()
    with store.session() as session:
        rows = Contributions(session).all(question)
        by_bytes = {c.image_sha256: c.pixels_sha256 for c in rows}
        gold = {by_bytes.get(k, k): v for k, v in (gold or {}).items()}
        for c in rows:
            key = (c.pixels_sha256, c.contributor)
            if key not in latest or c.made_at >= latest[key][0]:
                latest[key] = (c.made_at, c.answer)
            names.setdefault(c.pixels_sha256, (c.stored_name, c.image_sha256))
            if c.via != "local":
                elsewhere.add(c.pixels_sha256)
            if c.credit:
                credits[c.pixels_sha256].add(c.credit)
    votes = {k: v[1] for k, v in latest.items()}
    weights = contributor_weights(votes, gold)
    per_image: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (image, who), answer in votes.items():
        per_image[image][answer].append(who)
    out = []
    for image, answers in sorted(per_image.items()):
        weighted = {a: sum(weights[w] for w in who) for a, who in answers.items()}
        total = sum(weighted.values()) or 1.0
        fractions = {a: round(v / total, 4) for a, v in sorted(weighted.items())}
        consensus = gold.get(image) or max(sorted(fractions), key=lambda a: fractions[a])
        out.append(
            ImageVotes(
                image,
                names[image][0],
                {a: len(who) for a, who in sorted(answers.items())},
                fractions,
                consensus,
                fractions.get(consensus, 0.0),
                sum(len(who) for who in answers.values()),
                gold.get(image),
                sorted(credits[image]),
                names[image][1],
                image in elsewhere,
            )
        )
    return out
