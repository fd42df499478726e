"""Still images: numbered image sequences as input, and PNG frames as output.

Inputs: a folder of numbered images, or a printf pattern such as ``shots/frame_%04d.png``, reads as
one clip in the files' numeric order at SEQUENCE_RATE frames per second. A single image file needs
nothing from here: FFmpeg reads it as a one-frame video.

Outputs: ``out.png`` for a one-frame input; a pattern (``out/%06d.png``) or an existing folder
(frames named frame_000000.png, ...) for more. 8-bit RGB by default, 16-bit with ``--pix-fmt rgb48be`` (and by default for deeper inputs).
Nothing appears at the target until every frame is written: frames go to a hidden folder beside it
and are moved into place at the end; an error or Ctrl-C removes them.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from skipsr_cli.errors import InputError, OutputError, UsageError
from skipsr_cli.media.av_errors import said
from skipsr_cli.media.partials import Identity, identity, keep_old, partial_name, remove_stale

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
SEQUENCE_RATE = Fraction(25)  # FFmpeg's image2 default: sequences carry no rate of their own
PNG_FORMATS = {"rgb24": 8, "rgb48be": 16}
FOLDER_PATTERN = "frame_%06d.png"  # file names inside an output folder


def frame_number(path: Path) -> int | None:
    """The frame number in an image's name (its last run of digits), or None when it has none."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def sequence_files(path: Path) -> list[Path] | None:
    """The frames of an image-sequence input in order, or None when `path` is not one."""
    frames = sequence_frames(path)
    return None if frames is None else [p for _, p in frames]


def sequence_frames(path: Path) -> list[tuple[int, Path]] | None:
    """(frame number, file) of an image-sequence input in order, or None when `path` is not one.

    A folder: its image files, which must carry a number in their names (ordered by it). A printf
    pattern (``%d``, ``%04d``): the files it matches, in numeric order. A file that exists is read
    as that file, even with a ``%d`` in its name.
    """
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not files:
            raise InputError(f"no images in folder {path}")
        unnumbered = [p.name for p in files if frame_number(p) is None]
        if unnumbered:
            raise InputError(f"{path}: image {unnumbered[0]} has no frame number in its name")
        return sorted(((frame_number(p), p) for p in files), key=lambda f: (f[0], f[1].name))
    match = re.search(r"%0?(\d*)d", path.name)
    if match is None or path.is_file():
        return None
    head, tail = path.name[: match.start()], path.name[match.end() :]
    width = int(match.group(1) or 0)
    rule = re.compile(re.escape(head) + rf"(\d{{{max(width, 1)},}})" + re.escape(tail) + "$")
    folder = path.parent if str(path.parent) else Path(".")
    found = sorted(
        (int(m.group(1)), p)
        for p in (folder.iterdir() if folder.is_dir() else [])
        if (m := rule.match(p.name))
    )
    if not found:
        raise InputError(f"no files match the pattern {path}")
    return found


def read_image(path: Path) -> av.VideoFrame:
    """The one picture of an image file."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return frame
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"cannot read image {path}: {said(e, path)}") from e
    raise InputError(f"cannot read image {path}: it holds no picture")


def is_image_output(path: Path) -> bool:
    """Whether the output is PNG frames: a .png file or pattern, or an existing folder."""
    return path.suffix.lower() == ".png" or path.is_dir()


def frame_paths(path: Path, frames: int | None) -> tuple[Path, str | None]:
    """(folder, pattern) of a PNG output; pattern None means the single file `path` itself."""
    if path.is_dir():
        return path, FOLDER_PATTERN
    if "%" in path.name:
        return path.parent, path.name
    if frames is not None and frames > 1:
        raise UsageError(
            f"{path} is one PNG but the input has {frames} frames: give a pattern "
            f"such as {path.with_name(path.stem + '_%06d.png')} or a folder ending in /"
        )
    return path.parent, None


def _partial_folder(folder: Path, name: str) -> Path:
    """A new hidden folder beside the frames, named after this process (see partials.py)."""
    remove_stale(folder, name)  # what a killed run left here
    for _ in range(100):
        temp = folder / partial_name(name)
        try:
            temp.mkdir()
        except FileExistsError:
            continue
        return temp
    raise OSError(f"no free temporary name in {folder}")


class ImageWriter:
    """PNG frames, with the VideoWriter interface the pipeline uses (write, close, abort)."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        pix_fmt: str,
        frames: int | None,
        overwrite: bool = False,
        skipped_streams: list[str] | None = None,
        numbers: Sequence[int] | None = None,
    ) -> None:
        if pix_fmt not in PNG_FORMATS:
            raise UsageError(f"PNG frames are rgb24 or rgb48be, not {pix_fmt}")
        self.path, self.width, self.height = Path(path), width, height
        self.folder, self.pattern = frame_paths(self.path, frames)
        if self.pattern is not None:
            try:
                self.pattern % 0
            except (TypeError, ValueError) as e:
                raise UsageError(f"bad frame pattern {self.pattern!r}: {e}") from e
        if not self.folder.is_dir():
            raise OutputError(f"cannot write {self.path}: folder {self.folder} does not exist")
        self._overwrite = overwrite
        self._numbers = numbers  # the input sequence's frame numbers name the output's frames
        try:  # a fresh hidden folder: never one that exists, and a read-only target fails here
            self._temp = _partial_folder(self.folder, self.path.name or "frames")
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from e
        self._written: list[str] = []
        self._moved: list[str] | None = None  # the frames put in place, once published
        self.colour = None  # PNG frames are RGB: no matrix, no range
        self.planes_format = None
        self.depth = PNG_FORMATS[pix_fmt]
        self._codec = av.CodecContext.create("png", "w")
        self._codec.width, self._codec.height, self._codec.pix_fmt = width, height, pix_fmt
        self.warnings = [
            f"{s} cannot be stored in PNG frames; left out" for s in skipped_streams or []
        ]
        self.frames_written = 0

    def _name(self, index: int) -> str:
        if self.pattern is None:
            return self.path.name
        numbers = self._numbers
        return self.pattern % (numbers[index] if numbers and index < len(numbers) else index)

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Encode one (H, W, 3) uint8 or uint16 RGB frame as the next PNG."""
        if rgb.shape != (self.height, self.width, 3):
            raise ValueError(f"expected a ({self.height}, {self.width}, 3) frame, got {rgb.shape}")
        if self.pattern is None and self.frames_written:  # a frame count the input did not tell
            raise UsageError(
                f"{self.path} is one PNG but the input has more than one frame: give a pattern "
                f"such as {self.path.with_name(self.path.stem + '_%06d.png')} or a folder ending in /"
            )
        source = "rgb24" if rgb.dtype == np.uint8 else "rgb48le"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=source)
        name = self._name(self.frames_written)
        try:
            data = b"".join(
                bytes(p) for p in self._codec.encode(frame.reformat(format=self._codec.pix_fmt))
            )
            (self._temp / name).write_bytes(data)
        except (av.FFmpegError, OSError) as e:
            raise OutputError(
                f"cannot write {self.folder / name}: {said(e, self.folder / name)}"
            ) from e
        self._written.append(name)
        self.frames_written += 1

    def close(self) -> None:
        """Move every frame into place (refusing to replace files unless overwriting)."""
        self.publish()
        self.commit()

    def finish(self) -> None:
        """The frames are complete in the partial folder (each was written whole)."""
        if not self._written:
            self.abort()
            raise OutputError(f"cannot write {self.path}: no frames were written")

    def identity(self) -> Identity:
        """The first frame's identity in place (partials.identity), once `publish` has moved it."""
        first = self._written[0]
        return identity(self.folder / first, self._temp / first)

    def clash(self) -> Path | None:
        """The first frame file already there that `publish` may not replace, or None."""
        clash = [n for n in self._written if (self.folder / n).exists()]
        return self.folder / clash[0] if clash and not self._overwrite else None

    def publish(self) -> None:
        """Move every frame into place; frames it replaces (--overwrite) are kept in the partial
        folder until `commit`. A move that fails takes back the frames moved before it."""
        if self._moved is not None:
            return
        self.finish()
        clash = self.clash()
        if clash is not None:
            self.abort()
            raise OutputError(f"output exists: {clash} (pass --overwrite to replace it)")
        self._moved = []
        old = self._temp / ".replaced"
        target = self.folder
        try:
            old.mkdir()
            for name in self._written:
                target = self.folder / name
                keep_old(target, old / name)
                self._moved.append(name)  # before the move: one stopped halfway is taken back
                (self._temp / name).replace(target)
        except BaseException as e:
            self.unpublish()
            self.abort()
            if isinstance(e, OSError):
                raise OutputError(f"cannot write {target}: {e.strerror or e}") from e
            raise

    def unpublish(self) -> None:
        """Take back the frames this writer put in place, putting back those they replaced."""
        for name in self._moved or []:
            old, target = self._temp / ".replaced" / name, self.folder / name
            if old.exists():
                old.replace(target)
            elif not (self._temp / name).exists():  # moved (else it never left)
                target.unlink(missing_ok=True)
        self._moved = None

    def commit(self) -> None:
        """Let go of the replaced frames and the partial folder: every output is in place."""
        shutil.rmtree(self._temp, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self._temp, ignore_errors=True)

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
