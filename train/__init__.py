"""Training: dataset export for LLM Foundry (train/eval JSONL and a dataset card)."""
