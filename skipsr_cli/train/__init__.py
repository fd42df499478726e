"""Training: the loop over the stages vae, dit and mask (`loop`), the data pack and the stream of
clip pairs (`data`), resumable checkpoints (`checkpoint`), starting from weights of another shape
(`warm_start`), and the degradations that make a low-resolution input from a high-resolution clip
(`degrade`, shared with `measure/evaluate`).

May import: `models`, `skipsr_cli.media`, `skipsr_cli.errors`, `skipsr_cli.weights`. Never
`run/` or `commands/`.
"""
