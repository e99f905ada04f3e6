"""Audio I/O: every PCM width, float, FLAC, multichannel, resampling, and clear errors on bad files."""
import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from ddfad_fast import AudioFileError, ParameterError, load_audio, save_audio  # noqa: E402
from ddfad_fast.audio import resample  # noqa: E402

SR = 8000


def tone(freq: float = 440.0, seconds: float = 0.25, sr: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return amplitude * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("fmt,subtype,atol", [
    ("WAV", "PCM_U8", 1 / 64), ("WAV", "PCM_16", 1 / 16384), ("WAV", "PCM_24", 1e-6), ("WAV", "PCM_32", 1e-8),
    ("WAV", "FLOAT", 1e-7), ("WAV", "DOUBLE", 1e-12), ("FLAC", "PCM_16", 1 / 16384), ("FLAC", "PCM_24", 1e-6)])
def test_reads_every_width_and_format(tmp_path, fmt, subtype, atol):
    y = tone()
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, y, SR, format=fmt, subtype=subtype)
    wave, sr = load_audio(path)
    assert sr == SR and wave.dtype == torch.float32 and wave.shape == (y.size,)
    np.testing.assert_allclose(wave.numpy(), y, atol=atol)


def test_multichannel_mix_and_keep(tmp_path):
    left, right = tone(440), tone(660)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right, 0 * left], axis=1), SR, subtype="FLOAT")
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono.numpy(), (left + right) / 3, atol=1e-6)
    multi, _ = load_audio(path, mono=False)
    assert multi.shape == (3, left.size)


def test_resampling_on_load_and_strict_refusal(tmp_path):
    path = tmp_path / "hi.wav"
    sf.write(path, tone(440, 0.5, 16000), 16000, subtype="FLOAT")
    wave, sr = load_audio(path, sample_rate=SR)
    assert sr == SR and wave.shape == (4000,)
    want = tone(440, 0.5, SR)
    assert np.abs(wave.numpy() - want)[100:-100].max() < 1e-4
    with pytest.raises(AudioFileError, match="16000 Hz, expected 8000 Hz"):
        load_audio(path, sample_rate=SR, resample_ok=False)


@pytest.mark.parametrize("orig,target", [(16000, 8000), (8000, 16000), (44100, 8000), (22050, 16000), (8000, 11025)])
def test_resample_keeps_in_band_tones_and_removes_aliases(orig, target):
    t = np.arange(orig) / orig
    x = np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1500 * t)
    y = resample(torch.from_numpy(x), orig, target).numpy()
    assert y.size == target
    tt = np.arange(y.size) / target
    want = np.sin(2 * np.pi * 440 * tt) + 0.5 * np.sin(2 * np.pi * 1500 * tt)
    assert np.abs(y - want)[200:-200].max() < 2e-4
    if target < orig:  # a tone above the new Nyquist frequency is removed, not folded back
        above = np.sin(2 * np.pi * 0.6 * target * t)
        assert np.abs(resample(torch.from_numpy(above), orig, target).numpy())[200:-200].max() < 1e-3


def test_resample_batches_and_dtypes():
    x = torch.randn(2, 3, 1000, dtype=torch.float32)
    y = resample(x, 8000, 16000)
    assert y.shape == (2, 3, 2000) and y.dtype == torch.float32
    torch.testing.assert_close(y[1, 2], resample(x[1, 2], 8000, 16000))
    assert resample(x, 8000, 8000) is x
    with pytest.raises(ParameterError, match="sample rates"):
        resample(x, 0, 8000)


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioFileError, match="missing.wav: no such file"):
        load_audio(missing)
    text = tmp_path / "text.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioFileError, match="text.wav: not a readable audio file"):
        load_audio(text)
    truncated = tmp_path / "truncated.wav"
    sf.write(truncated, tone(), SR, subtype="PCM_16")
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(AudioFileError, match="truncated.wav"):
        load_audio(truncated)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), SR, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="empty.wav: empty"):
        load_audio(empty)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioFileError, match="zero.wav"):
        load_audio(zero_bytes)
    nan = tmp_path / "nan.wav"
    y = tone()
    y[10] = np.nan
    sf.write(nan, y, SR, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="nan.wav: non-finite"):
        load_audio(nan)


def cut_data(path, frames: int, frame_bytes: int) -> None:
    """Keep the header of a WAV file but only ``frames`` frames of its data (a copy cut short)."""
    raw = path.read_bytes()
    start = raw.index(b"data") + 8
    path.write_bytes(raw[:start + frames * frame_bytes])


@pytest.mark.parametrize("subtype,channels,frame_bytes", [("PCM_16", 1, 2), ("PCM_24", 2, 6), ("FLOAT", 1, 4)])
def test_truncated_wav_is_an_error_not_a_short_clip(tmp_path, subtype, channels, frame_bytes):
    """A header that declares 3,705 frames over data holding 228 is a truncated file, not a 228-sample clip."""
    path = tmp_path / "cut.wav"
    wave = np.stack([tone(seconds=3705 / SR)] * channels, axis=1)
    sf.write(path, wave, SR, subtype=subtype)
    assert load_audio(path)[0].shape == (3705,)
    cut_data(path, 228, frame_bytes)
    with pytest.raises(AudioFileError, match=r"cut.wav: truncated: header declares 3705 frames, data holds 228"):
        load_audio(path)
    path.write_bytes(path.read_bytes() + b"\x00")          # a partial frame more: still truncated
    with pytest.raises(AudioFileError, match="data holds 228$"):
        load_audio(path)


def test_wav_with_trailing_chunks_or_unset_size_is_not_truncated(tmp_path):
    """A chunk after the data (LIST metadata) and the size a stream leaves unset are not truncation."""
    path = tmp_path / "list.wav"
    sf.write(path, tone(), SR, subtype="PCM_16")
    with sf.SoundFile(path, "r+") as f:
        f.title = "a title"                              # libsndfile writes a LIST chunk after the data
    assert load_audio(path)[0].shape == (len(tone()),)
    raw = bytearray((tmp_path / "list.wav").read_bytes())
    start = raw.index(b"data")
    raw[start + 4:start + 8] = b"\xff\xff\xff\xff"
    stream = tmp_path / "stream.wav"
    stream.write_bytes(bytes(raw))
    from ddfad_fast.audio import wav_truncation
    assert wav_truncation(stream) is None and wav_truncation(path) is None


def test_save_round_trip_and_checks(tmp_path):
    y = tone()
    path = save_audio(tmp_path / "out" / "a.wav", torch.from_numpy(y).float(), SR)
    back, sr = load_audio(path)
    assert sr == SR
    np.testing.assert_allclose(back.numpy(), y, atol=1 / 16384)
    loud = save_audio(tmp_path / "loud.wav", 3 * y, SR)                 # PCM clips beyond [-1, 1]
    assert float(load_audio(loud)[0].abs().max()) == pytest.approx(1.0, abs=1e-4)
    flac = save_audio(tmp_path / "a.flac", y, SR)
    assert sf.info(flac).format == "FLAC"
    stereo = save_audio(tmp_path / "s.wav", np.stack([y, -y]), SR, subtype="FLOAT")
    assert sf.info(stereo).channels == 2
    with pytest.raises(ParameterError, match="non-finite"):
        save_audio(tmp_path / "bad.wav", np.array([0.0, np.inf]), SR)
    with pytest.raises(ParameterError, match="shape"):
        save_audio(tmp_path / "bad.wav", np.zeros((2, 2, 2)), SR)
    assert not list(tmp_path.glob(".*")), "temporary file left behind"
