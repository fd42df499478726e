"""Media in and out: everything that touches PyAV and FFmpeg.

Owns probing and decoding (`video_io`), finding frame N by a checked seek (`seeking`), encoding and
muxing (`video_writer`, `encoding`), copying and re-encoding the other streams (`stream_copy`,
`audio_transcode`), joining pieces without re-encoding (`joiner`), the hidden partial files an
output is written to and putting a run's outputs in place together (`partials`), what PyAV raises (`av_errors`), still images and image sequences
(`image_io`), colour conversion between RGB and the file's planes (`colour`), the quantiser a file
was coded with (`quantiser`), and the threads a worker's encoders, decoders and torch take when it
shares the host (`cpu_share`).

May import: `skipsr_cli.errors`, numpy, av, torch. Nothing from `models/`, `run/`, `train/`,
`measure/` or `commands/`: media knows nothing of the network or the terminal.
"""
