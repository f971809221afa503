"""Quiet by default: known third-party warnings are filtered at their source; --verbose shows them."""

import os
import warnings

import pytest

from c3d_rt.core.console import bar_disabled, filter_harmless_warnings, set_verbose


@pytest.mark.parametrize("verbose", [False, True])
def test_harmless_warnings_are_hidden_unless_verbose(verbose, monkeypatch):
    monkeypatch.delenv("C3D_RT_VERBOSE", raising=False)
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")  # what it sets (these) is undone after the test
    monkeypatch.setenv("OPENCV_LOG_LEVEL", "ERROR")
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        set_verbose(verbose)
        filter_harmless_warnings()
        warnings.warn_explicit("`torch.jit.trace` is deprecated", DeprecationWarning, "trace.py", 1,
                               module="torch.jit._trace")
        warnings.warn_explicit("a user's own problem", UserWarning, "mine.py", 1, module="c3d_rt.data")
    set_verbose(False)
    messages = [str(w.message) for w in caught]
    assert "a user's own problem" in messages  # c3d-rt's own warnings always show
    assert ("`torch.jit.trace` is deprecated" in messages) == verbose


def test_progress_bars_draw_only_on_a_terminal():
    assert bar_disabled(True) is None  # tqdm: None = draw only when the stream is a terminal
    assert bar_disabled(False) is True


def test_opening_a_video_never_hides_what_another_thread_writes_to_stderr(tmp_path, monkeypatch, capfd):
    """While one thread opens a broken video, what another writes to file descriptor 2 (a traceback, an `error:`
    line) still reaches the terminal: the decoders are quieted by their own log levels, never by redirecting fd 2."""
    import threading

    import c3d_rt.data.video as video

    monkeypatch.delenv("C3D_RT_VERBOSE", raising=False)
    broken = tmp_path / "cut.avi"
    broken.write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(200))  # cut inside its header
    capture = video.cv2.VideoCapture

    def opened_while_another_thread_writes(*args):
        other = threading.Thread(target=os.write, args=(2, b"error: another thread's message\n"))
        other.start()
        other.join()
        return capture(*args)

    monkeypatch.setattr(video.cv2, "VideoCapture", opened_while_another_thread_writes)
    assert not video.open_video(broken).isOpened()
    assert "error: another thread's message" in capfd.readouterr().err


def test_decoder_logs_are_quiet_unless_verbose(monkeypatch):
    from c3d_rt.core.console import DECODER_LOG_ENV, quiet_decoder_logs

    for name in DECODER_LOG_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("C3D_RT_VERBOSE", "1")
    quiet_decoder_logs()
    assert not any(name in os.environ for name in DECODER_LOG_ENV)
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", DECODER_LOG_ENV["OPENCV_FFMPEG_LOGLEVEL"])  # from a quiet parent
    quiet_decoder_logs()
    assert "OPENCV_FFMPEG_LOGLEVEL" not in os.environ  # --verbose shows all
    monkeypatch.delenv("C3D_RT_VERBOSE")
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "24")  # a user's own choice stays
    quiet_decoder_logs()
    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "24"


def test_our_own_warnings_are_one_line():
    from c3d_rt.core.console import format_warning

    ours = os.path.join(os.path.dirname(__import__("c3d_rt").__file__), "training", "fit.py")
    assert format_warning(UserWarning("skipping /data/a/x.avi: unreadable or empty video"), UserWarning, ours,
                          78) == "warning: skipping /data/a/x.avi: unreadable or empty video\n"
    assert "x.py:3: UserWarning: a library's" in format_warning(UserWarning("a library's"), UserWarning,
                                                                "/site-packages/lib/x.py", 3)
