"""The CNN: the paper's small Xception, chunk preprocessing, inference and training.

TensorFlow/Keras load lazily (importing them costs seconds and they must never load inside QGIS).
"""
