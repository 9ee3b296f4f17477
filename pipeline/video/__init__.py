"""Composed video: audiograms (moviepy) for audio-only episodes and their soundbites."""
