"""User-facing errors: one clear line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input from the person running the tool (config, data, paths, checkpoints).

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    """

    exit_code = 2
