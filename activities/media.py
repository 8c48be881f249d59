"""Video and audio: what ffprobe says of a file (duration, codecs, frame size) and a poster
frame from ffmpeg, for the thumbnails stage.

ffmpeg reads the file as the demuxer of its sniffed type only, and from local files only
(`-protocol_whitelist file`): a playlist or concat list dressed as a video can neither pull
a URL nor read another local file. Every run has a deadline; a frame size over the image
pixel limit is refused before anything is decoded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from activities.extract.types import Beat
from conveyor_core.stage_rules import MEDIA_DEMUXERS

SAFE_INPUT = ["-protocol_whitelist", "file", "-probesize", "20000000"]
MPEG_SEQUENCE_HEADER = b"\x00\x00\x01\xb3"


class MediaUnreadable(Exception):
    """The file cannot be read as the media its type says; the message is one sentence."""


def _run(args: list[str], what: str, timeout: float, beat: Beat) -> str:
    try:
        return run_command(args, timeout, beat)
    except CommandTimedOut as e:
        raise MediaUnreadable(f"{what} took longer than {timeout:g} s.") from e
    except CommandFailed as e:
        raise MediaUnreadable(f"Not a readable {what.split()[-1]} ({e}).") from e


def demuxer_for(path: Path, content_type: str) -> str:
    """The one demuxer the file is read with: its type's. libmagic calls both an MPEG
    program stream (.mpg, .vob) and a bare MPEG video stream (.m2v) video/mpeg; the latter
    starts with a sequence header, not a pack header."""
    demuxer = MEDIA_DEMUXERS[content_type]
    if demuxer == "mpeg":
        with path.open("rb") as f:
            if f.read(4) == MPEG_SEQUENCE_HEADER:
                return "mpegvideo"
    return demuxer


def probe(path: Path, content_type: str, timeout: float, beat: Beat) -> dict[str, Any]:
    """duration (s), video_codec, audio_codec, width and height, as the streams say."""
    demuxer = demuxer_for(path, content_type)
    out = _run(
        [
            "ffprobe",
            "-v",
            "error",
            *SAFE_INPUT,
            "-f",
            demuxer,
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height,disposition",
            "-of",
            "json",
            str(path),
        ],
        "Reading the media file",
        timeout,
        beat,
    )
    try:
        answer = json.loads(out)
    except json.JSONDecodeError as e:
        raise MediaUnreadable("Not a readable media file (ffprobe said nothing usable).") from e
    found: dict[str, Any] = {}
    try:
        duration = float(answer.get("format", {}).get("duration", ""))
        if duration >= 0:
            found["duration"] = round(duration, 3)
    except ValueError:
        pass
    for stream in answer.get("streams", []):
        kind = stream.get("codec_type")
        attached = (stream.get("disposition") or {}).get("attached_pic") == 1
        if kind == "video" and "video_codec" not in found and not attached:
            found["video_codec"] = str(stream.get("codec_name", ""))
            if stream.get("width") and stream.get("height"):
                found["width"], found["height"] = int(stream["width"]), int(stream["height"])
        elif kind == "audio" and "audio_codec" not in found:
            found["audio_codec"] = str(stream.get("codec_name", ""))
    if not found.get("video_codec") and not found.get("audio_codec"):
        raise MediaUnreadable("Not a readable media file: it has no audio or video stream.")
    return found


def poster_frame(
    path: Path,
    content_type: str,
    info: dict[str, Any],
    longest_side: int,
    max_pixels: int,
    timeout: float,
    beat: Beat,
) -> Path:
    """A PNG of the frame a tenth of the way in (at most 5 s), beside `path`."""
    width, height = info.get("width", 0), info.get("height", 0)
    if width * height > max_pixels:
        raise MediaUnreadable(
            f"The video's frames are {width}x{height}, over the limit of {max_pixels} pixels."
        )
    at = min(5.0, float(info.get("duration", 0)) / 10)
    poster = path.with_name("poster.png")
    # Down to the longest thumbnail, never up.
    fit = (
        f"scale=w='min(iw,{longest_side})':h='min(ih,{longest_side})'"
        ":force_original_aspect_ratio=decrease"
    )
    # Seeking into a stream with few key frames (an MPEG-TS of a camera) can find no frame
    # to show: then the first frame.
    deadline, demuxer = time.monotonic() + timeout, demuxer_for(path, content_type)
    for seconds in (at, 0.0) if at > 0 else (0.0,):
        _run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-nostdin",
                "-y",
                "-threads",
                "1",
                *SAFE_INPUT,
                "-f",
                demuxer,
                "-ss",
                f"{seconds:.3f}",
                "-i",
                str(path),
                "-frames:v",
                "1",
                "-vf",
                fit,
                "-f",
                "image2",
                "-c:v",
                "png",
                str(poster),
            ],
            "Drawing the video's poster frame",
            max(deadline - time.monotonic(), 1.0),
            beat,
        )
        if poster.is_file():
            break
    if not poster.is_file():
        raise MediaUnreadable("Not a readable video: no frame could be drawn.")
    return poster
