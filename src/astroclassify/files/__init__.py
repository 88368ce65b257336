"""Files from outside, within bounds: their sizes as people read them, a zip's size before it is listed."""
