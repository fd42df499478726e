"""One streaming upscale: decode -> chunk -> model -> blend -> encode, as short named steps.

Owns the run's options and their validation (`options`), the orchestration (`pipeline`), the pure
chunk plan and overlap-add (`chunking`), decode and encode overlapped with the model (`overlap`),
and the events and statistics a run reports (`progress`). Batches of files and segments of one
long file will live here too, next to `pipeline`.

May import: `models`, `skipsr_cli.media`, `skipsr_cli.errors`, `skipsr_cli.weights`. Never
`commands/`: a run reports through events and the caller decides how to draw them.
"""
