"""Folder batches: `skipsr upscale IN_DIR OUT_DIR` and `skipsr_cli.upscale_batch`.

Owns the folder rule and the batch's files and outputs (`plan`), the done-records, the claims of
outputs being made and the output folder's lock (`records`), the files on one warm model or one
worker per device (`workers`), one batch end to end (`run`), and a batch's events, renderers and
table (`progress`).

May import: `models`, `skipsr_cli.errors`, `skipsr_cli.weights`, `skipsr_cli.media`, `skipsr_cli.run`
(each file is one streaming upscale), `skipsr_cli.processes` (how its workers start). Never
`commands/`.
"""
