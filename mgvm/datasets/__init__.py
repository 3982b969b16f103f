"""What makes data sets: the synthetic generator, tfds builders and ingestion of users' videos.

`mgvm.data` reads what these write; a training run imports nothing from here except the
synthetic writer, when its data set is generated on first use (docs/data.md).
"""
