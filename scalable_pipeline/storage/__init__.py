"""Durable storage under one data root: versioned tables with a published pointer, checkpoints."""
