"""Repair benchmarks: items, models, sandboxed tests, metrics, runs and reports (DESIGN.md, "Evaluation")."""
