"""The `skipsr` command line: one module per command group, each a thin layer over the library.

`common` holds what every command shares (exit-code mapping, device and dtype choice, the options
declared once); `upscale`, `eval`, `bench` and `train` each define their commands; `app` assembles
them into the Typer application that `skipsr_cli.cli` runs.

A command module may import `common` and the library (`skipsr_cli.api`, `run`, `media`, `train`,
`measure`, `weights`, `errors`), never another command module; only `app` imports them all.
"""
