"""Quiet by default: known third-party warnings are filtered at their source; --verbose shows them."""

import os
import sys
import warnings

import pytest

from c3d_rt.core.console import bar_disabled, filter_harmless_warnings, set_verbose


@pytest.mark.parametrize("verbose", [False, True])
def test_harmless_warnings_are_hidden_unless_verbose(verbose, monkeypatch):
    monkeypatch.delenv("C3D_RT_VERBOSE", raising=False)
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "-8")  # what it sets (this) is undone after the test
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


@pytest.mark.parametrize("verbose", [False, True])
def test_native_writes_to_stderr_are_hidden_unless_verbose(verbose, monkeypatch, capfd):
    """OpenCV's AVI reader writes to file descriptor 2 itself (not through sys.stderr): hidden there, shown with
    --verbose; what c3d-rt says before and after still shows."""
    import os

    from c3d_rt.core.console import quiet_native_stderr

    monkeypatch.delenv("C3D_RT_VERBOSE", raising=False)
    set_verbose(verbose)
    try:
        print("ours before", file=sys.stderr)
        with quiet_native_stderr():
            os.write(2, b"Unexpected element. Expected: LIST. Got: \xff\x01.\n")
            with quiet_native_stderr():  # nested (and concurrent) uses share one redirection
                os.write(2, b"[mov,mp4 @ 0x1] moov atom not found\n")
            os.write(2, b"still inside\n")
        print("ours after", file=sys.stderr)
    finally:
        set_verbose(False)
    err = capfd.readouterr().err
    assert "ours before" in err and "ours after" in err
    assert ("moov atom" in err and "Unexpected element" in err and "still inside" in err) == verbose


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
