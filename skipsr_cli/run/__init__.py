"""One streaming upscale: decode -> chunk -> model -> blend -> encode, as short named steps.

Owns the run's options and their validation (`options`), the orchestration (`pipeline`), the pure
chunk plan and overlap-add (`chunking`), decode and encode overlapped with the model (`overlap`),
and the events and statistics a run reports (`progress`). A folder batch: its files and outputs
(`batch`), done-records and lock (`records`), devices and workers (`workers`), the whole batch
(`batch_run`) and its events and renderers (`batch_progress`).

May import: `models`, `skipsr_cli.media`, `skipsr_cli.errors`, `skipsr_cli.weights`. Never
`commands/`: a run reports through events and the caller decides how to draw them.
"""
