"""The tolerance table: docs/architecture.md carries exactly tests/tolerances.py's rows, and its helpers fail
when a result is outside them."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tolerances import TOLERANCES, close, markdown_table, tol

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_docs_table_is_the_module_table():
    text = DOC.read_text()
    found = re.search(r"<!-- tolerances:begin[^>]*-->\n(.*?)\n<!-- tolerances:end -->", text, re.S)
    assert found, f"{DOC}: no tolerances:begin / tolerances:end block"
    assert found.group(1) == markdown_table(), "docs/architecture.md's table differs from tests/tolerances.py"


def test_rows_are_sane_and_the_librosa_compat_griffin_lim_is_tight():
    for key, row in TOLERANCES.items():
        assert row.rtol >= 0 and row.atol >= 0 and row.scale in ("", "peak", "max", "coef"), key
        assert key[1] in ("float32", "float64"), key
    assert TOLERANCES[("griffin_lim", "float64", "compat")].atol <= 1e-10
    assert tol("griffin_lim", torch.float64, "compat", peak=0.5) == dict(rtol=0, atol=1e-10)     # max(1, peak)
    assert tol("griffin_lim", np.float64, "compat", peak=3.0) == dict(rtol=0, atol=3e-10)
    assert tol("melspectrogram", "float32", "compat", peak=0.5)["atol"] == pytest.approx(0.5e-4)   # x peak


def test_helpers_fail_outside_the_tolerance():
    want = np.linspace(-1, 1, 11)
    close(want + 4e-4, want, "mfcc", "float32")
    with pytest.raises(AssertionError):
        close(want + 6e-4, want, "mfcc", "float32")
    with pytest.raises(AssertionError):
        close(torch.from_numpy(want) + 2e-10, torch.from_numpy(want), "griffin_lim", torch.float64)
    with pytest.raises(KeyError, match="no tolerance"):
        tol("mfcc", "float16")
    with pytest.raises(KeyError, match="per-coefficient"):
        tol("deltas", "float32", "gpu")
