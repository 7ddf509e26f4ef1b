"""Coffee Shop Ranker: an HTTP API that ranks coffee shops by their reviews."""

__version__ = "1.0.0"
