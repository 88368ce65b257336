"""Everyone's labels per image: vote counts, fractions, a consensus and its agreement (Galaxy Zoo style).

One vote per contributor per image (their latest, in the order *we* received them: a peer's
``made_at`` is its claim, not ours). Contributors are weighted by their skill on gold images
(Laplace-smoothed accuracy, as Zooniverse's aggregation weights user skill). Another
installation cannot prove who its contributors are, so a peer and everything it relays
(whatever origin those items claim) weigh together as one installation on each image, with
the peer's own skill on gold; only a remote contributor who earned skill on gold images votes
on their own. ``bench/crowd.py`` measures this against Dawid-Skene
on a simulated crowd with sock puppets. A gold image's consensus is its gold label whatever the
votes say. Disagreements are kept and shown, never overwritten.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from astroclassify.store import Store
from astroclassify.store.contributions import Contributions

__all__ = ["ImageVotes", "Vote", "aggregate_votes", "contributor_weights", "weigh_votes"]

PRIOR_WEIGHT = 0.5  # a contributor never checked on gold: weight of a coin-flip labeller's evidence
LOCAL = "local"
# A remote contributor votes alone only with a record: this many gold images, and this skill on them.
EARNED_MIN_GOLD = 5
EARNED_SKILL = 0.75


@dataclass(frozen=True)
class Vote:
    """One contributor's answer for one image, and where it reached us from (``local``, a peer, an import)."""

    image: str
    contributor: str
    answer: str
    source: str = LOCAL


@dataclass(frozen=True)
class ImageVotes:
    """The labels one image (by decoded pixels) received, aggregated."""

    pixels_sha256: str
    stored_name: str
    counts: dict[str, int]  # raw votes per answer (one per contributor)
    fractions: dict[str, float]  # skill-weighted vote fractions
    consensus: str  # "" when no answer carries more than half the weighted votes
    agreement: float  # the consensus answer's weighted fraction (without one: the leading answer's)
    contributors: int
    gold: str | None = None  # the gold label, when this image is in the gold set
    credits: list[str] = field(default_factory=list)
    image_sha256: str = ""  # of the stored file's bytes
    from_elsewhere: bool = False  # some vote came from another installation or an imported collection
    licences: list[str] = field(default_factory=list)

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


def weigh_votes(votes: Sequence[Vote], gold: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Each image's weighted answers: ``{image: {answer: weight}}`` (the last vote per contributor counts).

    Local contributors (people with a key or the web page here) vote with their own weight:
    their skill on gold, or ``PRIOR_WEIGHT``. So does a remote contributor who earned it (at
    least ``EARNED_MIN_GOLD`` gold images, skill at least ``EARNED_SKILL``). Each remote source's
    other contributors are pooled: on each image they cast one vote, split by their answers,
    weighted by the source's own skill on gold (its pooled answers judged like a contributor's).
    Fifty sock puppets of one peer therefore weigh what one installation does, and no more than
    its record on gold allows.
    """
    gold = gold or {}
    latest: dict[tuple[str, str], Vote] = {}
    for v in votes:
        latest[(v.image, v.contributor)] = v  # in the order received: the newest wins
    answers = {k: v.answer for k, v in latest.items()}
    weights = contributor_weights(answers, gold)
    checked = Counter(who for (image, who) in answers if image in gold)
    earned = {who for who, n in checked.items() if n >= EARNED_MIN_GOLD and weights[who] >= EARNED_SKILL}
    weighted: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    pooled: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for (image, who), v in latest.items():
        if v.source == LOCAL or who in earned:
            weighted[image][v.answer] += weights[who]
        else:
            pooled[(image, v.source)][v.answer] += 1
    source_answers = {
        (image, source): max(sorted(counts), key=lambda a: counts[a]) for (image, source), counts in pooled.items()
    }
    source_weight = contributor_weights(source_answers, gold)
    for (image, source), counts in pooled.items():
        total = sum(counts.values())
        for answer, n in counts.items():
            weighted[image][answer] += source_weight[source] * n / total
    return {image: dict(w) for image, w in weighted.items()}


def aggregate_votes(
    store: Store, *, question: str = "class", gold: Mapping[str, str] | None = None
) -> list[ImageVotes]:
    """Aggregate every contribution to ``question`` per image, this installation's new corrections included.

    ``gold`` maps images to gold labels, each image named by the digest of its decoded pixels
    or of its file's bytes (a model's gold set records the latter).
    """
    from astroclassify.sharing.contributions import publish_local_labels

    publish_local_labels(store)  # corrections made since the last read count too
    votes: list[Vote] = []
    names: dict[str, tuple[str, str]] = {}
    credits: dict[str, set[str]] = defaultdict(set)
    licences: dict[str, set[str]] = defaultdict(set)
    elsewhere: set[str] = set()
    with store.session() as session:
        rows = Contributions(session).all(question)  # in the order received
        by_bytes = {c.image_sha256: c.pixels_sha256 for c in rows}
        gold = {by_bytes.get(k, k): v for k, v in (gold or {}).items()}
        for c in rows:
            votes.append(Vote(c.pixels_sha256, c.contributor, c.answer, LOCAL if c.via == LOCAL else c.via))
            names.setdefault(c.pixels_sha256, (c.stored_name, c.image_sha256))
            if c.via != LOCAL:
                elsewhere.add(c.pixels_sha256)
            if c.credit:
                credits[c.pixels_sha256].add(c.credit)
            if c.licence:
                licences[c.pixels_sha256].add(c.licence)
    weighted = weigh_votes(votes, gold)
    latest = {(v.image, v.contributor): v.answer for v in votes}
    per_image: dict[str, Counter[str]] = defaultdict(Counter)
    for (image, _), answer in latest.items():
        per_image[image][answer] += 1
    out = []
    for image, counts in sorted(per_image.items()):
        total = sum(weighted[image].values()) or 1.0
        fractions = {a: round(v / total, 4) for a, v in sorted(weighted[image].items())}
        top = max(sorted(fractions), key=lambda a: fractions[a])
        # A consensus carries more than half the weighted votes (a tie has none); a gold label wins.
        consensus = gold.get(image) or (top if fractions[top] > 0.5 else "")
        out.append(
            ImageVotes(
                image,
                names[image][0],
                dict(sorted(counts.items())),
                fractions,
                consensus,
                fractions.get(consensus or top, 0.0),
                sum(counts.values()),
                gold.get(image),
                sorted(credits[image]),
                names[image][1],
                image in elsewhere,
                sorted(licences[image]),
            )
        )
    return out
