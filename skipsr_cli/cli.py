"""The `skipsr` console script. The commands live in `skipsr_cli/commands/`, one module per group.

Exit codes (README, "Exit codes"): 0 ok, 1 internal error, 2 bad usage, 3 unreadable input,
4 model or weights error, 5 output or encode error, 130 interrupted.
"""

from __future__ import annotations

from skipsr_cli.commands.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
