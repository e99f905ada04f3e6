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


class FileFormatError(DDFADError, ValueError):
    """A saved file that is not ours, from another format version, or of another config."""


class ResourceError(DDFADError, RuntimeError):
    """A run that cannot fit the given resources (e.g. --max-memory)."""
