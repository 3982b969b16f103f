"""Video data: the on-disk format, the synthetic motion data set, sampling and the tf.data pipeline.

The only part of mgvm that imports TensorFlow.
"""
