"""One exception family for the whole package."""


class DDFADError(Exception):
    """Base class of every error raised on purpose by ddfad_fast."""


class ParameterError(DDFADError, ValueError):
    """A bad argument value: the message names the argument and the value."""


class AudioFileError(DDFADError, OSError):
    """An audio file that cannot be read or written; the message names the file."""


class BackendUnavailableError(DDFADError, RuntimeError):
    """A backend that was asked for (e.g. with DDFAD_BACKEND or DDFAD_REQUIRE_EXT) cannot run here."""


class BackendFallbackWarning(RuntimeWarning):
    """Dispatch passed over a faster backend that cannot run here; the message names it and the reason."""


class ThreadCountWarning(RuntimeWarning):
    """A training checkpoint is resumed with another CPU thread count than it was written with: the result
    stays valid but is no longer bit-identical to an uninterrupted run."""


class FileFormatError(DDFADError, ValueError):
    """A saved file that is not ours, from another format version, or of another config."""


class ResourceError(DDFADError, RuntimeError):
    """A run that cannot fit the given resources (e.g. --max-memory)."""


class OutputError(DDFADError, OSError):
    """An output that cannot be written (disk full, no permission, read-only file system, quota, file size
    limit); the message names the path and what to do. Finished work (the last checkpoint) is kept."""

    def __str__(self) -> str:            # the message alone, never OSError's "[Errno N] ..." form
        return str(self.args[0]) if self.args else ""


class FolderBusyError(DDFADError):
    """An output folder that another process is writing into (it holds the folder's lock); the message
    names that process."""


class NonFiniteError(DDFADError, ArithmeticError):
    """Training produced NaN or infinite values; the message names the setting or file to blame. The
    last finite state is kept."""
