"""Other systems' worker and producer protocols, each mapped onto the core's operations."""
