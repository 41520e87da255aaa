"""User-facing errors: one clear line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input from the person running the tool (config, data, paths, checkpoints).

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    """

    exit_code = 2


class NetadWarning(UserWarning):
    """A warning of this project's own (a dropped column, an identifier-like column, a detector that cannot
    rank): shown under ``--quiet`` too, where other libraries' warnings are not."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a run trained: ``run_dir`` is the folder ``--resume`` continues."""

    def __init__(self, run_dir: object) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


#: operating-system errors that are the environment's doing, not the program's: how each is said
_OS_PROBLEMS = {
    "ENOSPC": "no space left on device while writing {path}",
    "EDQUOT": "disk quota exceeded while writing {path}",
    "EROFS": "read-only file system: cannot write {path}",
    "EACCES": "permission denied: {path}",
    "EPERM": "operation not permitted: {path}",
    "ENOTDIR": "not a folder: a part of {path} is a file",
    "EISDIR": "{path} is a folder, not a file",
    "EEXIST": "not a folder: {path} is a file",  # as mkdir says it of a file in the way
    "EMFILE": "too many open files (at {path})",
}


def os_error_line(exc: OSError, path: object = None) -> str | None:
    """One line for an OSError the user can act on (disk full, read-only or forbidden folder, ...), naming
    ``path`` (else the file the error names); None for any other error, which stays a bug to report."""
    import errno

    name = errno.errorcode.get(exc.errno or -1)
    if name not in _OS_PROBLEMS:
        return None
    named = exc.filename2 if name in ("ENOSPC", "EDQUOT") and exc.filename2 is not None else exc.filename
    where = path if path is not None else named if named is not None else "a file"  # a copy names both files
    return _OS_PROBLEMS[name].format(path=where)


#: what building a model from damaged or crafted file contents can raise; turned into one clear line
CONTENT_ERRORS = (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError)


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ModelLoadError(UserError, OSError):
    """A model that cannot be loaded (missing, unreachable, damaged or crafted files), in one line naming it.

    An OSError, as ``from_pretrained`` of other Hub libraries raises, and a UserError, so the
    command-line tools print it as one ``error:`` line."""
