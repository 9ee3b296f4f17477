"""The cluster fixture for the distributed tests."""

from tests.queue.cluster import cluster  # noqa: F401  (a fixture)
