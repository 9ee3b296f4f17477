"""`make bench`: measured, not asserted. Results go to bench/results/latest.{json,md}."""
