"""Audio analysis helpers shared by the finishing stages (trim, normalise, encode).

Everything here streams through ffmpeg: an hour-long recording is never decoded into Python
memory in one piece.
"""
