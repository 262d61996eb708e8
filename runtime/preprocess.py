"""Host-side preprocessing, built once from a bundle's typed input specs (`host_preprocessor`):
camera frame -> uint8 image at model size, PCM window -> float32 row, text -> token ids. The same
preprocessors feed the runtime's stages, calibration, evaluation and benchmarks. Bad inputs raise
DataError, which the pipeline counts as "bad_input" and drops.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np

from fusionrt.bundle import AudioInput, ImageInput, InputSpec, TextInput
from fusionrt.errors import BundleError, DataError
from fusionrt.runtime.native import convert_resize, picture_size

# Frames in these formats go through `convert_resize` (one pass); BGR/RGB keep OpenCV's exact path.
NATIVE_FORMATS = ("yuyv", "uyvy", "nv12", "i420")


def check_image(frame: object, pixel_format: str = "bgr") -> None:
    """DataError unless the frame is a non-empty uint8 picture in `pixel_format`: HxWx3 for bgr/rgb
    (what video files and most cameras deliver), HxWx2 for yuyv/uyvy, (H*3/2)xW for nv12/i420."""
    if pixel_format == "bgr":
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            found = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise DataError(f"camera frame must be uint8 HxWx3 (BGR), found {found}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise DataError(f"camera frame is empty ({list(frame.shape)})")
        return
    try:
        picture_size(frame, pixel_format)
    except ValueError as e:
        raise DataError(f"camera frame ({pixel_format}): {e}") from None


def check_text(text: object) -> None:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"text input must be a non-empty string, found {text!r:.40}")


def resize_image(frame: object, height: int, width: int, channel_order: str = "bgr",
                 pixel_format: str = "bgr") -> np.ndarray:
    """uint8 [1, height, width, 3] from a frame of any size in `pixel_format` (area-averaged when
    shrinking, bilinear when enlarging). BGR/RGB frames take OpenCV's `INTER_AREA` path, exactly as
    calibration saw them; raw camera formats take `convert_resize` (the native one-pass kernel when built)."""
    check_image(frame, pixel_format)
    if pixel_format in NATIVE_FORMATS:
        return convert_resize(frame, pixel_format, height, width, out_order=channel_order)[None]
    import cv2

    if pixel_format == "rgb":
        channel_order = "bgr" if channel_order == "rgb" else "rgb"
    if frame.shape[:2] != (height, width):
        shrink = frame.shape[0] >= height and frame.shape[1] >= width
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if channel_order == "rgb":
        frame = frame[:, :, ::-1]
    return np.ascontiguousarray(frame)[None]


def fit_window(signal: np.ndarray, window_samples: int) -> np.ndarray:
    """The first `window_samples` of a mono signal, zero-padded at the end when shorter."""
    out = np.zeros(window_samples, dtype=np.float32)
    n = min(window_samples, len(signal))
    out[:n] = signal[:n]
    return out


class ImagePreprocessor:
    """A camera frame of any size in `pixel_format` (`Frame.pixel_format`; BGR by default) ->
    {image: uint8 [1, H, W, 3]} in the model's channel order."""

    def __init__(self, spec: ImageInput) -> None:
        self.spec = spec

    def __call__(self, frame: object, pixel_format: str = "bgr") -> dict[str, np.ndarray]:
        spec = self.spec
        return {spec.name: resize_image(frame, spec.height, spec.width, spec.channel_order, pixel_format)}

    def batch(self, frames) -> dict[str, np.ndarray]:
        return {self.spec.name: np.concatenate([self(f)[self.spec.name] for f in frames])}

    def example(self) -> np.ndarray:
        return np.zeros((self.spec.height, self.spec.width, 3), np.uint8)


class AudioPreprocessor:
    """One mono float32 window of exactly window_samples -> {audio: float32 [1, window_samples]}."""

    def __init__(self, spec: AudioInput) -> None:
        self.spec = spec

    def __call__(self, window: object) -> dict[str, np.ndarray]:
        window, _ = clean_audio(window)
        if len(window) != self.spec.window_samples:
            raise DataError(f"audio window has {len(window)} samples; the encoder takes {self.spec.window_samples} "
                            f"(cut windows with PcmWindows, or fit_window for a clip)")
        return {self.spec.name: window[None]}

    def batch(self, windows) -> dict[str, np.ndarray]:
        return {self.spec.name: np.concatenate([self(w)[self.spec.name] for w in windows])}

    def example(self) -> np.ndarray:
        return np.zeros(self.spec.window_samples, np.float32)


class TextPreprocessor:
    """text -> {input_ids, attention_mask[, token_type_ids]} int64 [1, seq] through the bundle's tokenizer."""

    def __init__(self, spec: TextInput) -> None:
        self.spec = spec
        self.tokenizer = TextTokenizer(spec.tokenizer_file, spec.max_length, spec.padding)

    def __call__(self, text: object) -> dict[str, np.ndarray]:
        return self._named(self.tokenizer(text))

    def batch(self, texts) -> dict[str, np.ndarray]:
        return self._named(self.tokenizer.batch(list(texts)))

    def example(self) -> str:
        return "hello"

    def _named(self, encoded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "token_type_ids" in self.spec.input_names:
            encoded["token_type_ids"] = np.zeros_like(encoded["input_ids"])
        return {name: encoded[name] for name in self.spec.input_names}


Preprocessor = ImagePreprocessor | AudioPreprocessor | TextPreprocessor


def host_preprocessor(spec: InputSpec) -> Preprocessor:
    """The one host preprocessor of an encoder, from its typed input spec (`Component.input`)."""
    if isinstance(spec, ImageInput):
        return ImagePreprocessor(spec)
    if isinstance(spec, AudioInput):
        return AudioPreprocessor(spec)
    if isinstance(spec, TextInput):
        return TextPreprocessor(spec)
    raise BundleError(f"no host preprocessor for {type(spec).__name__}; expected an encoder's input spec")


def clean_audio(chunk: object) -> tuple[np.ndarray, bool]:
    """A 1-D float32 chunk with NaN/Inf replaced by 0, and whether any had to be replaced.

    Raises DataError for what cannot be audio (not a 1-D or [n, 1] float array).
    """
    if not isinstance(chunk, np.ndarray) or chunk.dtype.kind != "f":
        found = f"{chunk.dtype} array" if isinstance(chunk, np.ndarray) else type(chunk).__name__
        raise DataError(f"audio chunk must be a float32 array of mono samples, found {found}")
    if chunk.ndim == 2 and chunk.shape[1] == 1:
        chunk = chunk[:, 0]
    if chunk.ndim != 1:
        raise DataError(f"audio chunk must be mono (1-D), found shape {list(chunk.shape)}")
    chunk = chunk.astype(np.float32, copy=False)
    finite = np.isfinite(chunk)
    if finite.all():
        return chunk, False
    return np.where(finite, chunk, np.float32(0)), True


class PcmWindows:
    """A bounded ring of PCM samples cut into windows of `window` samples every `hop` samples.

    Window k covers samples [k*hop, k*hop + window) of the stream; its time is the capture time of
    its last sample (a chunk's `t_ns` is the capture time of the chunk's last sample). In order
    mode every window is taken; with `newest_only` a take jumps to the newest complete window and
    reports how many were superseded. The ring holds 2 windows + a hop (it grows only to fit a
    chunk larger than that).
    """

    def __init__(self, sample_rate: int, window: int, hop: int, *, newest_only: bool) -> None:
        if window <= 0 or hop <= 0:
            raise DataError(f"audio window ({window}) and hop ({hop}) must be positive sample counts")
        self.sample_rate = sample_rate
        self.window = window
        self.hop = hop
        self.newest_only = newest_only
        self._buffer = np.zeros(2 * window + hop, np.float32)
        self._written = 0  # samples ever appended
        self._next_end = window  # end (exclusive sample index) of the next window to take
        self._chunks: deque[tuple[int, int, int | None]] = deque(maxlen=1024)  # (end index, t_ns, label)

    def append(self, samples: np.ndarray, t_ns: int, label: int | None = None) -> None:
        n = len(samples)
        if n == 0:
            return
        self._fit(n)
        size = len(self._buffer)
        if n > size:
            samples = samples[-size:]
        start = (self._written + n - len(samples)) % size
        first = min(len(samples), size - start)
        self._buffer[start : start + first] = samples[:first]
        self._buffer[: len(samples) - first] = samples[first:]
        self._written += n
        self._chunks.append((self._written, t_ns, label))

    def ready(self) -> bool:
        return self._written >= self._next_end

    def take(self) -> tuple[np.ndarray, int, int, int | None, int]:
        """(window float32 [window], t_ns, window index, label, windows superseded); call when ready()."""
        end = self._next_end
        if self.newest_only:
            end += (self._written - end) // self.hop * self.hop
        superseded = (end - self._next_end) // self.hop
        self._next_end = end + self.hop
        size = len(self._buffer)
        start = (end - self.window) % size
        first = min(self.window, size - start)
        samples = np.empty(self.window, np.float32)
        samples[:first] = self._buffer[start : start + first]
        samples[first:] = self._buffer[: self.window - first]
        t_ns, label = self._time_of(end)
        return samples, t_ns, (end - self.window) // self.hop, label, superseded

    def _time_of(self, end: int) -> tuple[int, int | None]:
        """Capture time of sample end-1, from the chunk that holds it, and that chunk's label."""
        holder = self._chunks[-1]
        for chunk in reversed(self._chunks):
            if chunk[0] < end:
                break
            holder = chunk
        chunk_end, t_ns, label = holder
        return t_ns - (chunk_end - end) * 1_000_000_000 // self.sample_rate, label

    def _fit(self, n: int) -> None:
        """Grow the ring when a chunk of n samples would overwrite samples the next window needs."""
        oldest_needed = max(0, self._next_end - self.window)
        if self.newest_only:
            oldest_needed = max(oldest_needed, self._written + n - len(self._buffer))
        needed = self._written + n - oldest_needed
        if needed <= len(self._buffer):
            return
        size = needed + self.hop
        keep = min(self._written, len(self._buffer))
        old = len(self._buffer)
        grown = np.zeros(size, np.float32)
        indices = np.arange(self._written - keep, self._written)
        grown[indices % size] = self._buffer[indices % old]
        self._buffer = grown


class TextTokenizer:
    """text -> input_ids and attention_mask int64 [1, seq] with the `tokenizers` library.

    Pads to max_length (padding "max_length") and truncates to it, with the pad token the
    tokenizer.json records, else the one tokenizer_config.json names, else "[PAD]".
    """

    def __init__(self, tokenizer_json: str | Path, max_length: int, padding: str | None = "max_length") -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_json)
        if not path.is_file():
            raise BundleError(f"tokenizer file {path} does not exist; the text encoder needs its tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exception subclasses from Rust
            raise BundleError(f"{path} is not a tokenizers tokenizer.json: {e}") from e
        self.max_length = int(max_length)
        tokenizer.enable_truncation(self.max_length)
        self._pad = _pad_token(tokenizer, path)
        if padding == "max_length":
            tokenizer.enable_padding(length=self.max_length, pad_id=self._pad[0], pad_token=self._pad[1])
        else:
            tokenizer.no_padding()
        self._tokenizer = tokenizer

    def __call__(self, text: object) -> dict[str, np.ndarray]:
        check_text(text)
        encoding = self._tokenizer.encode(text)
        return {
            "input_ids": np.asarray([encoding.ids], np.int64),
            "attention_mask": np.asarray([encoding.attention_mask], np.int64),
        }

    def batch(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Rows of equal length: padded to max_length, or (padding "longest") to the batch's longest."""
        for text in texts:
            check_text(text)
        if self._tokenizer.padding is None:
            self._tokenizer.enable_padding(pad_id=self._pad[0], pad_token=self._pad[1])
            try:
                encodings = self._tokenizer.encode_batch(texts)
            finally:
                self._tokenizer.no_padding()
        else:
            encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.asarray([e.ids for e in encodings], np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], np.int64),
        }


def _pad_token(tokenizer, path: Path) -> tuple[int, str]:
    if tokenizer.padding:
        return tokenizer.padding["pad_id"], tokenizer.padding["pad_token"]
    config = path.parent / "tokenizer_config.json"
    token = "[PAD]"
    if config.is_file():
        named = json.loads(config.read_text(encoding="utf-8")).get("pad_token")
        token = named.get("content") if isinstance(named, dict) else (named or token)
    pad_id = tokenizer.token_to_id(token)
    if pad_id is None:
        raise BundleError(f"{path}: the tokenizer has no pad token {token!r}; save the tokenizer with its pad token")
    return pad_id, token
