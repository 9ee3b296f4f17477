"""Podcast feeds: building, validating and publishing the RSS feeds of each show.

Submodules are imported explicitly (`pipeline.feeds.build`, `.validate`, `.publish`, ...); this
package file stays empty so `pipeline.config` can import the category list without a cycle.
"""
