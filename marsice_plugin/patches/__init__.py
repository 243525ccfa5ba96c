"""The second stage: an ice probability for each candidate outline, from full-resolution pixels.

The chunk CNN reads products at JPEG2000 level 1 or 2 and flags where to look; the brightness rule
(:mod:`marsice_plugin.candidates`) outlines every bright patch there, most of them sunlit boulder faces, dust and
noise. Each outline is judged here from a level-0 crop turned so the sun is at the top (:mod:`.crops`) by a small
CNN (:mod:`.model`) inside the one detect flow (:mod:`.stage`, called by :mod:`marsice_plugin.detection`).
:mod:`.metrics` measures what a geologist gets (polygon precision, planted-patch recall, average precision of the
ranking) and :mod:`.training` makes the training examples from the rule's own outlines.
"""
