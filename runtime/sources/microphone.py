"""Audio sources (modality audio): microphones via sounddevice, audio files via soundfile, test://dtmf.

Frames are float32 mono chunks of `options.chunk_ms` at `options.sample_rate` (the last chunk of a
file may be shorter). A chunk's t_ns is the capture time of its last sample. NaN/Inf samples are
replaced by 0 and counted in `stats["nonfinite_samples"]` (counted per channel value, before the
downmix). A file that ends before the frame count its header declares (for WAV, the RIFF data
chunk's size, since libsndfile itself counts only what is there) is streamed up to the cut, counted
in `stats["truncated"]`, then raises SourceError saying it is truncated.
"""

from __future__ import annotations

import os
import queue
import time
import warnings
from collections.abc import Iterator

import numpy as np

from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.sources.base import BaseSource, SourceOptions, require_live_replay
from fusionrt.runtime.sources.resample import StreamResampler

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
FILE_BLOCK_S = 0.1  # how much of a file is decoded at a time
MIC_QUEUE_CHUNKS = 50  # about 1 s of 20 ms chunks between the audio callback and the consumer
MIC_SILENCE_TIMEOUT_S = 2.0


def sanitize(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 samples with NaN/Inf replaced by 0, and how many were replaced."""
    samples = np.asarray(samples, np.float32)
    finite = np.isfinite(samples)
    bad = int(samples.size - np.count_nonzero(finite))
    return (np.where(finite, samples, np.float32(0)) if bad else samples), bad


def downmix(block: np.ndarray) -> np.ndarray:
    """Mono float32 from a [frames, channels] block (the channel mean)."""
    return block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


def import_sounddevice(uri: str):
    try:
        import sounddevice
    except ImportError:
        raise SourceError(f"microphone {uri!r} needs the sounddevice package: pip install 'fusionrt[audio]'") from None
    except OSError as e:  # the package is there but the PortAudio library is not
        raise SourceError(
            f"microphone {uri!r}: sounddevice cannot load PortAudio ({e}); install it (apt install libportaudio2)"
        ) from None
    return sounddevice


def input_devices(sd) -> list[str]:
    """'index: name (N Hz)' for every device with input channels."""
    return [
        f"{d['index']}: {d['name']} ({int(d['default_samplerate'])} Hz)"
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


def open_audio_file(uri: str, path: str, options: SourceOptions) -> AudioFileSource:
    if not os.path.isfile(path):
        raise SourceError(f"audio file {path} does not exist")
    return AudioFileSource(uri, path, options)


def open_microphone(uri: str, device: int | str | None, options: SourceOptions) -> MicrophoneSource:
    """`device` None is the system default input, an int a device index, a str part of a device name."""
    require_live_replay(uri, options)
    sd = import_sounddevice(uri)
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as e:
        found = input_devices(sd)
        raise SourceError(
            f"microphone {uri!r} not found ({e}); input devices: {'; '.join(found) if found else 'none'}"
        ) from None
    return MicrophoneSource(uri, sd, info, options)


def wav_declared_frames(path: str) -> int | None:
    """The frame count a RIFF/WAVE header declares (data chunk size / block align), or None when the
    file is not a WAV or declares no usable size (0 or 0xFFFFFFFF: written by a streaming recorder)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            for _ in range(64):  # bounded: a WAV has a handful of chunks before its data
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt " and size >= 16:
                    fmt = f.read(size + size % 2)
                    block_align = int.from_bytes(fmt[12:14], "little")
                    continue
                if chunk[:4] == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                f.seek(size + size % 2, os.SEEK_CUR)
    except OSError:
        return None
    return None


class Rechunker:
    """Cuts a stream of sample blocks into chunks of exactly `size` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buffer = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        self._buffer = np.concatenate([self._buffer, samples])
        n = len(self._buffer) // self.size
        chunks = [self._buffer[i * self.size : (i + 1) * self.size] for i in range(n)]
        self._buffer = self._buffer[n * self.size :]
        return chunks

    def flush(self) -> list[np.ndarray]:
        rest, self._buffer = self._buffer, np.zeros(0, np.float32)
        return [rest] if len(rest) else []


class AudioFileSource(BaseSource):
    """A WAV/FLAC/OGG/... file, downmixed to mono and resampled to `options.sample_rate`."""

    counters = ("nonfinite_samples", "loops", "truncated")

    def __init__(self, uri: str, path: str, options: SourceOptions) -> None:
        import soundfile

        super().__init__(Modality.AUDIO, uri, 1000.0 / options.chunk_ms)
        self.path = path
        self.options = options
        try:
            self._file = soundfile.SoundFile(path)
        except (RuntimeError, TypeError, ValueError) as e:  # LibsndfileError is a RuntimeError
            raise SourceError(f"audio file {path} cannot be decoded: {e}") from None
        self.file_rate = self._file.samplerate
        self.channels = self._file.channels
        self.declared_frames = max(self._file.frames, wav_declared_frames(path) or 0)
        if self.file_rate != options.sample_rate:
            warnings.warn(
                f"audio file {path} is {self.file_rate} Hz; resampling it to {options.sample_rate} Hz",
                stacklevel=5,  # the caller of open_source
            )

    def _generate(self) -> Iterator[Frame]:
        emitted = 0  # output samples released so far
        for chunk in self._chunks():
            emitted += len(chunk)
            t_ns = self._due(emitted * 1_000_000_000 // self.options.sample_rate, self.options.replay)
            if t_ns is None:
                return
            yield self._frame(chunk, t_ns)

    def _chunks(self) -> Iterator[np.ndarray]:
        """Chunks of every pass; a truncated file is streamed to its cut (flushed), then raises SourceError."""
        resampler = StreamResampler(self.file_rate, self.options.sample_rate)
        chunker = Rechunker(self.options.chunk_samples)
        block = max(1, round(self.file_rate * FILE_BLOCK_S))
        truncated = None
        while True:
            read = 0
            for samples in self._blocks(block):
                read += len(samples)
                yield from chunker.push(resampler.push(samples))
            if 0 < self.declared_frames and read < self.declared_frames:
                self.stats["truncated"] += 1
                truncated = read
                break
            if not self.options.loop or self._closed.is_set():
                break
            self._file.seek(0)
            self.stats["loops"] += 1
        yield from chunker.push(resampler.flush())
        yield from chunker.flush()
        if truncated is not None:
            raise SourceError(
                f"audio file {self.path} is truncated: it ended after {truncated} of the {self.declared_frames} "
                f"frames its header declares (what was there was streamed)"
            )

    def _blocks(self, size: int) -> Iterator[np.ndarray]:
        """Mono sanitised blocks of one pass over the file."""
        read = 0
        while True:
            try:
                block = self._file.read(size, dtype="float32", always_2d=True)
            except (RuntimeError, ValueError) as e:
                raise SourceError(f"audio file {self.path}: decoding failed after {read} frames: {e}") from e
            if len(block) == 0:
                return
            read += len(block)
            block, bad = sanitize(block)
            self.stats["nonfinite_samples"] += bad
            yield downmix(block)

    def _release(self) -> None:
        self._file.close()


class MicrophoneSource(BaseSource):
    """A live input device, captured at its own rate and resampled; stamped at the audio callback."""

    counters = ("nonfinite_samples", "dropped_blocks", "overflows")

    def __init__(self, uri: str, sd, info, options: SourceOptions) -> None:
        super().__init__(Modality.AUDIO, uri, 1000.0 / options.chunk_ms)
        self.options = options
        self.device_name = info["name"]
        self.device_rate = int(info["default_samplerate"])
        self._queue: queue.Queue = queue.Queue(MIC_QUEUE_CHUNKS)
        try:
            self._stream = sd.InputStream(
                device=info["index"],
                samplerate=self.device_rate,
                channels=1,
                dtype="float32",
                blocksize=max(1, round(self.device_rate * options.chunk_ms / 1000)),
                callback=self._on_audio,
            )
        except sd.PortAudioError as e:
            raise SourceError(
                f"microphone {self.device_name!r} cannot be opened at {self.device_rate} Hz: {e}"
            ) from None

    def _on_audio(self, indata, frames, time_info, status) -> None:
        t_ns = time.monotonic_ns()
        if status.input_overflow:
            self.stats["overflows"] += 1
        try:
            self._queue.put_nowait((indata.copy(), t_ns))
        except queue.Full:
            self.stats["dropped_blocks"] += 1

    def _generate(self) -> Iterator[Frame]:
        resampler = StreamResampler(self.device_rate, self.options.sample_rate)
        chunker = Rechunker(self.options.chunk_samples)
        try:
            self._stream.start()
        except Exception as e:  # sounddevice.PortAudioError; the module is not imported here
            raise SourceError(f"microphone {self.device_name!r} cannot start: {e}") from e
        last_audio = time.monotonic()
        while not self._closed.is_set():
            try:
                block, t_ns = self._queue.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() - last_audio > MIC_SILENCE_TIMEOUT_S:
                    raise SourceError(
                        f"microphone {self.device_name!r} delivered no audio for {MIC_SILENCE_TIMEOUT_S} s; "
                        f"was it unplugged?"
                    ) from None
                continue
            last_audio = time.monotonic()
            block, bad = sanitize(block)
            self.stats["nonfinite_samples"] += bad
            for chunk in chunker.push(resampler.push(downmix(block))):
                yield self._frame(chunk, t_ns)

    def _release(self) -> None:
        if not self._stream.closed:
            self._stream.stop()
            self._stream.close()


class TestDtmfSource(BaseSource):
    """DTMF digits: each second one `fusionrt.data.dtmf_tone` window (a tone burst with gaps around
    it) of the scene's digit (`fusionrt.data.scene_digit`, shared with the other test:// sources);
    label = the digit of the second holding the chunk's last sample."""

    __test__ = False  # not a pytest class

    def __init__(self, uri: str, options: SourceOptions) -> None:
        from fusionrt import data

        super().__init__(Modality.AUDIO, uri, 1000.0 / options.chunk_ms)
        self.options = options
        self._tone = data.dtmf_tone
        self._scene = data.scene_digit
        self._total = None if options.duration_s is None else round(options.duration_s * self.rate_hz)

    def _generate(self) -> Iterator[Frame]:
        rng = np.random.default_rng(self.options.seed)
        rate = self.options.sample_rate
        size = self.options.chunk_samples
        period = rate
        second = 0
        samples = np.zeros(0, np.float32)
        labels = np.zeros(0, np.int64)
        index = 0
        while self._total is None or index < self._total:
            while len(samples) < size:
                label = self._scene(second, self.options.seed)
                second += 1
                samples = np.concatenate([samples, self._tone(label, rng, sample_rate=rate, n_samples=period)])
                labels = np.concatenate([labels, np.full(period, label)])
            chunk, samples = samples[:size], samples[size:]
            label, labels = int(labels[size - 1]), labels[size:]
            t_ns = self._due((index + 1) * size * 1_000_000_000 // rate, self.options.replay)
            if t_ns is None:
                return
            yield self._frame(chunk, t_ns, label)
            index += 1
