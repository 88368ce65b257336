"""Labels shared between installations: contributions, sync with peers, vote aggregation, exchange files.

A contribution is one person's label for one image, with the image, its licence and credit,
and who made it where. ``contributions`` turns this installation's corrections into
contributions and serves them to peers; ``sync`` pulls a peer's (checking every byte);
``votes`` aggregates everyone's labels per image into counts, fractions and a consensus
(Galaxy Zoo style); ``exchange`` writes and reads collections as Galaxy Zoo style Parquet.
"""
