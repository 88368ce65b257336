"""Model folders, the one owner of what is written in them: open a name or path, list and move
versions, write a graph with its classes and preprocessing, finish it (calibrate, score, plot, card).
"""
