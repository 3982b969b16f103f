"""Evaluation: multi-view classification accuracy and masked-reconstruction quality."""
