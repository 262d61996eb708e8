"""Audio sources on real files written with soundfile, test://dtmf, and the microphone's errors."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from fusionrt import data
from fusionrt.errors import SourceError
from fusionrt.frame import Modality
from fusionrt.runtime.sources import Replay, SourceOptions, open_source
from fusionrt.runtime.sources.resample import StreamResampler

DETERMINISTIC = SourceOptions(replay=Replay.DETERMINISTIC)


def tone(hz: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def test_wav_at_44k1_is_resampled_to_16k_keeping_a_1khz_tone(tmp_path):
    path = tmp_path / "tone.wav"
    samples = tone(1000, 44100, 1.0)
    soundfile.write(path, samples, 44100, subtype="FLOAT")
    with pytest.warns(UserWarning, match="tone.wav is 44100 Hz; resampling it to 16000 Hz"):
        source = open_source(str(path), "audio", options=DETERMINISTIC)
    assert source.modality is Modality.AUDIO and source.rate_hz == 50.0
    frames = list(source.frames())
    assert [len(f.data) for f in frames] == [320] * 50
    assert all(f.data.dtype == np.float32 for f in frames)
    assert [f.t_ns for f in frames] == [(k + 1) * 20_000_000 for k in range(50)]
    out = np.concatenate([f.data for f in frames])
    assert len(out) / len(samples) == pytest.approx(16000 / 44100, abs=1e-4)
    assert peak_hz(out, 16000) == pytest.approx(1000, abs=2)
    np.testing.assert_allclose(out, resample_poly(samples, 160, 441), atol=1e-6)  # no seams at chunk edges


def test_stereo_flac_is_downmixed_to_the_channel_mean(tmp_path):
    path = tmp_path / "stereo.flac"
    left, right = tone(440, 16000, 0.5, 0.4), tone(1200, 16000, 0.5, 0.2)
    soundfile.write(path, np.stack([left, right], axis=1), 16000)
    source = open_source(str(path), "audio", options=SourceOptions(chunk_ms=50, replay="deterministic"))
    out = np.concatenate([f.data for f in source.frames()])
    assert len(out) == 8000 and source.stats["frames"] == 10
    np.testing.assert_allclose(out, (left + right) / 2, atol=2 / 32768)  # FLAC is 16-bit PCM


def test_nonfinite_samples_are_zeroed_and_counted(tmp_path):
    path = tmp_path / "bad.wav"
    samples = tone(300, 16000, 0.25)
    bad_at = [5, 100, 101, 2000, 3999]
    samples[bad_at] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    source = open_source(str(path), "audio", options=DETERMINISTIC)
    out = np.concatenate([f.data for f in source.frames()])
    assert np.all(np.isfinite(out)) and np.all(out[bad_at] == 0)
    good = np.setdiff1d(np.arange(len(samples)), bad_at)
    np.testing.assert_array_equal(out[good], samples[good])
    assert source.stats["nonfinite_samples"] == 5


def test_last_partial_chunk_and_loop(tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, tone(500, 16000, 0.05), 16000)  # 800 samples = 2.5 chunks
    frames = list(open_source(str(path), "audio", options=DETERMINISTIC).frames())
    assert [len(f.data) for f in frames] == [320, 320, 160]
    assert frames[-1].t_ns == 50_000_000
    looped = open_source(str(path), "audio", options=SourceOptions(loop=True, replay="deterministic"))
    frames = []
    for frame in looped.frames():
        frames.append(frame)
        if len(frames) == 12:
            looped.close()
    assert [f.seq for f in frames] == list(range(12)) and looped.stats["loops"] >= 4
    assert np.all(np.diff([f.t_ns for f in frames]) == 20_000_000)


def test_realtime_file_replay_takes_the_audio_duration(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, tone(500, 16000, 0.3), 16000)
    start = time.monotonic()
    frames = list(open_source(str(path), "audio").frames())
    elapsed = time.monotonic() - start
    assert len(frames) == 15 and 0.9 * 0.3 <= elapsed < 0.3 + 0.4
    assert np.all(np.diff([f.t_ns for f in frames]) > 0)


def test_truncated_flac_raises_and_missing_or_junk_files_name_themselves(tmp_path):
    path = tmp_path / "cut.flac"
    soundfile.write(path, tone(700, 16000, 1.0), 16000)
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * 0.6)])
    with pytest.raises(SourceError, match="cut.flac"):
        list(open_source(str(path), "audio", options=DETERMINISTIC).frames())
    with pytest.raises(SourceError, match="nothere.wav does not exist"):
        open_source(str(tmp_path / "nothere.wav"), "audio")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not audio" * 10)
    with pytest.raises(SourceError, match="junk.wav cannot be decoded"):
        open_source(str(junk), "audio")


def test_truncated_wav_streams_to_its_cut_then_says_it_is_truncated(tmp_path):
    # libsndfile clamps a cut WAV's frame count to the bytes present; the RIFF data chunk says more.
    path = tmp_path / "cut.wav"
    soundfile.write(path, tone(700, 16000, 1.0), 16000)
    content = path.read_bytes()
    path.write_bytes(content[:-12000])
    source = open_source(str(path), "audio", options=DETERMINISTIC)
    assert source.declared_frames == 16000
    frames = []
    with pytest.raises(SourceError, match=r"cut.wav is truncated: it ended after 10000 of the 16000 frames"):
        for frame in source.frames():
            frames.append(frame)
    assert sum(len(f.data) for f in frames) == 16000 - 6000  # everything readable was streamed
    assert source.stats["truncated"] == 1


def test_wav_declared_frames_reads_the_riff_data_chunk(tmp_path):
    from fusionrt.runtime.sources.microphone import wav_declared_frames

    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.zeros((300, 2), np.float32), 8000, subtype="PCM_16")
    assert wav_declared_frames(str(path)) == 300
    (tmp_path / "x.wav").write_bytes(b"RIFF\x00\x00")
    assert wav_declared_frames(str(tmp_path / "x.wav")) is None
    assert wav_declared_frames(str(tmp_path / "missing.wav")) is None


def test_test_dtmf_is_the_data_generator_with_ground_truth():
    options = SourceOptions(replay=Replay.DETERMINISTIC, duration_s=3.0, seed=5, sample_rate=8000, chunk_ms=25)
    frames = list(open_source("test://dtmf", "audio", options=options).frames())
    assert len(frames) == 120 and all(len(f.data) == 200 for f in frames)
    rng = np.random.default_rng(5)
    expected_labels, expected_audio = [], []
    for second in range(3):
        label = data.scene_digit(second, 5)
        expected_labels += [label] * 40
        expected_audio.append(data.dtmf_tone(label, rng, sample_rate=8000, n_samples=8000))
    assert [f.label for f in frames] == expected_labels
    np.testing.assert_array_equal(np.concatenate([f.data for f in frames]), np.concatenate(expected_audio))
    again = list(open_source("test://dtmf", "audio", options=options).frames())
    assert [(f.t_ns, f.label) for f in again] == [(f.t_ns, f.label) for f in frames]


def test_test_dtmf_realtime_pace():
    start = time.monotonic()
    frames = list(open_source("test://dtmf", "audio", options=SourceOptions(duration_s=0.2)).frames())
    assert len(frames) == 10 and 0.9 * 0.2 <= time.monotonic() - start < 0.2 + 0.4


def test_stream_resampler_equals_resampling_the_whole_signal():
    rng = np.random.default_rng(0)
    for rate_in, rate_out in [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000)]:
        x = rng.standard_normal(rate_in + 777).astype(np.float32)
        resampler = StreamResampler(rate_in, rate_out)
        pieces, i = [], 0
        while i < len(x):
            n = int(rng.integers(1, 1500))
            pieces.append(resampler.push(x[i : i + n]))
            i += n
        pieces.append(resampler.flush())
        common = np.gcd(rate_in, rate_out)
        expected = resample_poly(x, rate_out // common, rate_in // common)
        np.testing.assert_allclose(np.concatenate(pieces), expected, atol=1e-5)


def test_microphone_without_sounddevice_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if the audio extra were not installed
    for uri in ("default", "1", "USB Audio"):
        with pytest.raises(SourceError, match=r"pip install 'fusionrt\[audio\]'"):
            open_source(uri, "audio")


def test_live_microphone_refuses_deterministic_replay():
    with pytest.raises(SourceError, match="live source"):
        open_source("default", "audio", options=DETERMINISTIC)


def test_unknown_microphone_lists_input_devices():
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as e:
        pytest.skip(f"sounddevice with PortAudio is not installed here ({e}); the missing package is tested above")
    with pytest.raises(SourceError, match="no-such-microphone-xyz.*input devices"):
        open_source("no-such-microphone-xyz", "audio")


def test_default_microphone_streams_chunks_when_there_is_one():
    try:
        source = open_source("default", "audio", options=SourceOptions(sample_rate=16000))
    except SourceError as e:
        pytest.skip(f"needs a real microphone: {e}")
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 10:
            source.close()
    assert all(len(f.data) == 320 and f.data.dtype == np.float32 for f in frames)
    assert np.all(np.diff([f.t_ns for f in frames]) >= 0)
