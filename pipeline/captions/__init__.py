"""Captions from word timestamps: profiles, the segmenter, writers and the QA report."""
