"""Evaluation metrics: multi-view classification, masked reconstruction, EVAD detection
(`detection`) and the frame-mAP it reports (`frame_map`)."""
