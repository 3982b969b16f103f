"""The two runners behind `train.py` and `eval.py`; they ask the task (`mgvm.tasks`) what differs."""
