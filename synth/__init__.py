"""Code-repair examples from (code, diagnostic) pairs: line diffs, prompt schema, synthesis, checks."""
