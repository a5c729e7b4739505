"""`grpokit view RUN_DIR`: read a run folder (config.json, metrics.jsonl, summary.json,
rollouts.jsonl) and show it in a browser: one self-contained HTML file, or a local server for
runs too large for one file. The rollouts log's format is documented in logs.ROLLOUTS_FORMAT."""
