"""Data stages: the raw challenge layout, the simulator, ingestion and preprocessing."""
