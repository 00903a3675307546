"""Pipelines from configuration: the YAML model, the factory and the pool limits."""
