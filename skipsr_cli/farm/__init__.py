"""Long videos in segments: farms, several devices, clusters and resume.

Owns the segments (part I of N, its frame range, the scheduler's array index, the manifests:
`segments`), rendering one part and stitching the parts (`parts`), one video on several devices of
this machine (`devices`), segments as Ray tasks (`ray`), and the resumable run of a long video
(`resume`). A part is a frame range of one streaming upscale (`run`), so the parts join into
exactly the frames of a whole run.

May import: `models`, `skipsr_cli.errors`, `skipsr_cli.weights`, `skipsr_cli.media`, `skipsr_cli.run`,
`skipsr_cli.batch` (its workers' stop on SIGTERM), `skipsr_cli.processes`. Never `commands/`.
"""
