"""Media in and out: everything that touches PyAV and FFmpeg.

Owns probing and decoding (`video_io`), encoding and muxing (`video_writer`, `encoding`), copying
and re-encoding the other streams (`stream_copy`, `audio_transcode`), still images and image
sequences (`image_io`), and colour conversion between RGB and the file's planes (`colour`).

May import: `skipsr_cli.errors`, numpy, av, torch. Nothing from `models/`, `run/`, `train/`,
`measure/` or `commands/`: media knows nothing of the network or the terminal.
"""
