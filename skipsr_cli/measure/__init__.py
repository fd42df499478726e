"""Measuring: quality against lanczos and bicubic on degraded copies (`evaluate`), the metrics
themselves (`metrics`), and the timings behind BENCHMARKS.md (`bench`).

May import: `models`, `skipsr_cli.media`, `skipsr_cli.run` (a benchmark times real runs),
`skipsr_cli.train.degrade` (evaluation degrades like training does), `skipsr_cli.errors`,
`skipsr_cli.weights`. Never `commands/`.
"""
