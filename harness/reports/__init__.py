"""What a run reports: the matrix (terminal, Markdown, JSON, HTML), the baseline gate,
benchmark tables and the per-environment summary."""
