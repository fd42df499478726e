"""One streaming upscale: decode -> chunk -> model -> blend -> encode, as short named steps.

Owns the run's options and their validation (`options`), the orchestration (`pipeline`), the pure
chunk plan and overlap-add (`chunking`), decode and encode overlapped with the model (`overlap`),
the events and statistics a run reports (`progress`), where a run may write (`targets`), what
a run sees of its input inside a frame range (`ranges`), the smaller settings a chunk is
retried with when it runs out of GPU memory (`memory`), frames onto the model's device and back
(`device_frames`), where a chunk's shot changes so that the
model never looks across a scene cut (`scenes`), and how the host waits for a GPU without
spinning on a core the encoder needs (`host_waits`). Folder batches (`skipsr_cli/batch/`) and
long videos in segments (`skipsr_cli/farm/`) are built from such runs.

May import: `models`, `skipsr_cli.media`, `skipsr_cli.errors`, `skipsr_cli.weights`. Never
`commands/`: a run reports through events and the caller decides how to draw them.
"""
