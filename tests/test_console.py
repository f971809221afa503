"""Quiet by default: known third-party warnings are filtered at their source; --verbose shows them."""

import warnings

import pytest

from c3d_rt.core.console import bar_disabled, filter_harmless_warnings, set_verbose


@pytest.mark.parametrize("verbose", [False, True])
def test_harmless_warnings_are_hidden_unless_verbose(verbose, monkeypatch):
    monkeypatch.delenv("C3D_RT_VERBOSE", raising=False)
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
