"""The autonomous loop: snapshot what was learned, clean it, train a challenger, promote only what measures better.

``snapshot`` gathers labels (the store's corrections, archive categories, labelled folders
from elsewhere) into a content-addressed dataset folder; ``cleaning`` keeps likely label
errors out of training; ``promotion`` holds the frozen gold set and the paired comparison;
``loop.learn`` runs them in order and records every decision.
"""
