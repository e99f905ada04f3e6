"""keep_freed_memory: freed CPU tensors are reused instead of page-faulted in anew, memory plans still see only
what is in use, the commands turn it on unless --max-memory is given, and elsewhere than glibc it says so."""
import json
import platform
import subprocess
import sys
import warnings

import pytest

import ddfad_fast.resources as resources
from ddfad_fast.cli import entry
from ddfad_fast.errors import BackendFallbackWarning

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# a child process: page faults of 20 allocations of a 64 MiB tensor, written and freed, before and after the setting
FAULTS = r"""
import json, resource, torch
from ddfad_fast.resources import keep_freed_memory, process_rss_bytes

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        t = torch.ones(16 * 2 ** 20)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
kept = keep_freed_memory()
faults()                                   # the first one is faulted in once
after = faults()
rss0 = process_rss_bytes()
big = torch.ones(128 * 2 ** 20)            # 512 MiB, under the 1 GiB mmap threshold: from the heap
del big
rss1 = process_rss_bytes()
print(json.dumps({"default": default, "after": after, "kept": kept, "again": keep_freed_memory(),
                  "rss_growth_mb": (rss1 - rss0) / 2 ** 20}))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_freed_tensors_are_reused_and_plans_see_only_memory_in_use():
    out = subprocess.run([sys.executable, "-c", FAULTS], check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["kept"] and r["again"]
    # the defaults fault every 64 MiB allocation in (16,384 pages each); kept, nearly none
    assert r["default"] > 20 * 10_000, r
    assert r["after"] < r["default"] / 20, r
    # the 512 MiB freed block is handed back before the plan measures (else +512 MiB)
    assert r["rss_growth_mb"] < 64, r


def test_elsewhere_than_glibc_it_warns_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(resources, "_LIBC", None)
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("", ""))
    with pytest.warns(BackendFallbackWarning, match="mallopt is not available"):
        assert resources.keep_freed_memory() is False
    assert resources._LIBC is None
    resources.process_rss_bytes()              # nothing to hand back: measures as before


@pytest.mark.parametrize("argv, keeps", [
    (["backends"], True),
    (["distill", "--data", "missing", "--experts", "missing", "--cpc", "1", "--out", "o"], True),
    (["distill", "--data", "missing", "--experts", "missing", "--cpc", "1", "--out", "o", "--max-memory", "4"], False),
])
def test_commands_keep_freed_memory_unless_a_memory_limit_is_given(monkeypatch, tmp_path, argv, keeps):
    calls = []
    monkeypatch.setattr(resources, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entry.main(argv)
    assert calls == ([1] if keeps else [])
