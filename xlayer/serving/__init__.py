"""Serving: continuous batching (scheduler simulator, steady state, deployments and SLO search). docs/serving.md."""
