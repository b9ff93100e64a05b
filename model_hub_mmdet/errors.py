"""Errors a user can fix. Their message is one line that names the file or key and says what to do."""


class UserError(ValueError):
    """Base class of every error caused by user input; the CLI prints ``str(err)`` without a traceback."""


class ConfigError(UserError):
    """An experiment hyperparameter or MMDetection config cannot be loaded, merged or overridden."""


class DataError(UserError):
    """A dataset, annotation file or storage object cannot be read."""


class WeightsError(UserError):
    """Pretrained or exported weights cannot be found, downloaded, verified or loaded."""


class SetupError(UserError):
    """The installed stack (e.g. Determined's version) does not provide what this package needs."""
