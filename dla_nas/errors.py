"""The errors that mean bad input, not a bug in dla-nas.

Each one's message is one line that names the field, flag or file and what is allowed; the
command line prints it and exits with status 2. They are ``ValueError``s, so code written
before this base existed keeps catching them.
"""

from __future__ import annotations


class DlaNasError(ValueError):
    """Bad input to dla-nas; the message names what is wrong and what is allowed."""


class GenomeError(DlaNasError):
    """A genome that is malformed or cannot be built; the message names the field."""


class SpaceError(DlaNasError):
    """A malformed search space; the message names the file, the key and what is allowed."""


class DataError(DlaNasError):
    """Bad dataset input; the message names the field, file or folder and what is allowed."""


class TrainError(DlaNasError):
    """A training setting that is not allowed; the message names the setting."""


class CheckpointError(DlaNasError):
    """A checkpoint file that cannot be read as a dla-nas checkpoint."""


class RunError(DlaNasError):
    """A run folder that cannot be used as asked; the message names the file."""


class OptionError(DlaNasError):
    """A command-line flag or search option that is not allowed; the message names it."""


class WeightsError(DlaNasError):
    """Pretrained weights that cannot be found, fetched, trusted or loaded; the message names
    the source or file and what to do."""


class WriteError(DlaNasError):
    """An output file that cannot be written (no space left, no permission, a read-only
    disk); the message names the file, which keeps its previous content."""


class BackboneError(DlaNasError):
    """A backbone or feature tap that cannot be used; the message names the tap, the model or
    the package to install."""
