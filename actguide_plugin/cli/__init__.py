"""Console scripts ``actguide-eval``, ``actguide-analyze`` and ``actguide-export``: argument parsing and wiring only."""


def usage_error(err: BaseException) -> str | None:
    """The one line for an error the user fixes on the command line — a bad value, a missing file, or a config
    error as ``actguide-train`` reports it — or None for a crash, whose traceback stays."""
    from recipe.actguide.main_actguide import config_error_line

    if isinstance(err, ValueError | FileNotFoundError) and config_error_line(err) is None:
        return str(err)
    return config_error_line(err)
