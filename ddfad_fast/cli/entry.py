"""The ``ddfad`` command line: one sub-command per stage.

Each sub-command lives in ``ddfad_fast/cli/<name>.py`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``main(args) -> int``. Exit codes: 0 success, 1 failure, 2 usage or
configuration error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import time
import sys
from typing import List, Optional

from .. import pause
from ..errors import DDFADError, ParameterError, FileFormatError, ResourceError
from ..outputs import describe_os_error
from .guard import holding_outputs, out_of_memory

COMMANDS = ("features", "reconstruct", "data", "experts", "distill", "evaluate", "run", "continual", "nas",
            "bench", "backends")
TRAINING_COMMANDS = ("experts", "distill", "evaluate", "run", "continual", "nas")     # these take --device
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CommandImportError(DDFADError, ImportError):
    """A sub-command module that cannot be imported: a broken install, never a command to drop in silence."""


def _busy_cores(window_s: float = 0.3) -> float:
    """Cores busy right now: the non-idle share of /proc/stat's CPU time over ``window_s`` seconds times the
    core count (the 1-minute load average where /proc/stat is missing; it lags a job that just ended)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)       # idle + iowait
        return sum(fields) - idle, sum(fields)
    try:
        busy0, total0 = sample()
        time.sleep(window_s)
        busy1, total1 = sample()
        return (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1e-9)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def free_cores() -> int:
    """The cores not busy with other work when the command starts (at least 1).

    OpenMP threads that compete with another busy process for the same cores wait on each other at every
    parallel region; one thread per free core avoids that (bench/results/threads.json).
    """
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - int(_busy_cores() + 0.5)))


def resolve_device(spec: str):
    """``--device``: "auto" (the first CUDA device when torch sees one, else the CPU), "cpu", "cuda" or
    "cuda:N"; a CUDA device torch cannot see is an error, never a silent CPU run."""
    import torch
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ParameterError(f"--device {spec!r} is not a device name (auto, cpu, cuda, cuda:N)") from exc
    if device.type not in ("cpu", "cuda"):
        raise ParameterError(f"--device {spec!r}: only cpu and cuda are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"--device {spec}: torch sees no CUDA device (torch {torch.__version__}, "
                                 f"built for CUDA {torch.version.cuda})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterError(f"--device {spec}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddfad", description="Dataset distillation for audio (DDFAD).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ddfad_fast.cli.{name}")
        except ImportError as exc:
            raise CommandImportError(f"sub-command {name!r} cannot be loaded: ddfad_fast.cli.{name} failed to "
                                     f"import ({type(exc).__name__}: {exc})") from exc
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        cmd.add_argument("--threads", type=int, default=None, metavar="N",
                         help="CPU threads for torch (default: OMP_NUM_THREADS when set, else the cores not busy "
                              "with other work when the command starts)")
        if name in TRAINING_COMMANDS:
            cmd.add_argument("--device", default="auto",
                             help="where nets train and data is distilled: auto (CUDA when torch sees a GPU, else "
                                  "the CPU), cpu, cuda or cuda:N")
            cmd.add_argument("--deterministic", action="store_true",
                             help="deterministic GPU kernels (torch.use_deterministic_algorithms; slower): two runs, "
                                  "or a torchrun launch and one process, give the same numbers on a GPU too")
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``ddfad ARGV``; returns the exit code (130 after Ctrl-C, at whatever point it came)."""
    try:
        return _command(argv)
    except KeyboardInterrupt:       # while starting (imports, --threads), before any work of the command
        print("ddfad: interrupted", file=sys.stderr)
        return 130


def _command(argv: Optional[List[str]]) -> int:
    try:                # a file name that is not UTF-8 is printed escaped, never a UnicodeEncodeError
        sys.stdout.reconfigure(errors="backslashreplace")
    except (AttributeError, ValueError):
        pass
    try:
        parser = build_parser()
    except CommandImportError as exc:
        print(f"ddfad: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    args = parser.parse_args(argv)
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return EXIT_USAGE
    if args.threads is not None and args.threads < 1:
        print(f"ddfad {args.command}: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return EXIT_USAGE
    import torch
    if args.threads is not None or not os.environ.get("OMP_NUM_THREADS"):    # an explicit OMP_NUM_THREADS stands
        torch.set_num_threads(args.threads or free_cores())
    if getattr(args, "max_memory", None) is None:      # under a memory limit the allocator's defaults stand
        from ..resources import keep_freed_memory
        keep_freed_memory()
    from .. import distributed
    if getattr(args, "deterministic", False):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")       # cuBLAS's condition for determinism
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    finished = False
    try:
        if hasattr(args, "device"):
            args.device = distributed.local_device(resolve_device(args.device))
        distributed.init(args.command, getattr(args, "device", None))
        if pause.ARMED:                 # a test-only hook (ddfad_fast.pause): a malformed value is a usage error
            pause.configure(os.environ[pause.ENV])
        with holding_outputs(args):
            code = int(args._main(args) or 0)
        finished = True
        return code
    except KeyboardInterrupt:
        print(f"ddfad {args.command}: interrupted; finished work is saved, run the same command with --resume "
              "to continue", file=sys.stderr)
        return 130
    except (ParameterError, FileFormatError, ResourceError) as exc:
        print(f"ddfad {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DDFADError as exc:
        print(f"ddfad {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:          # a file or folder the command could not read or write: one line, exit 1
        print(f"ddfad {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except (MemoryError, RuntimeError) as exc:       # an allocation that failed: one line; anything else goes on
        message = out_of_memory(exc)
        if message is None:
            raise
        print(f"ddfad {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        distributed.shutdown(wait=finished)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
