"""Every exception symgrad raises on purpose, in one place.

Each message names what went wrong in the user's terms: the primitive or function, the argument,
the shapes and dtypes involved, and the line of user code (``file.py:12``) where it happened.
"""


class SymgradError(Exception):
    """Base class of symgrad's own errors."""


class TracingError(SymgradError):
    """The function cannot be traced, e.g. Python control flow on a traced value."""


class UnsupportedError(TracingError, AttributeError):
    """A NumPy or SciPy function symgrad does not support yet (``snp.foo``, ``np.foo(tracer)``).
    The message names it and the closest supported names. An AttributeError too, so that
    ``hasattr(symgrad.numpy, "foo")`` is False."""


class ShapeError(SymgradError, ValueError):
    """Operand shapes do not fit an operation (raised at trace time)."""


class DTypeError(SymgradError, TypeError):
    """An operand has a dtype the operation or the signature cannot take."""


class CompileError(SymgradError):
    """The C compiler failed. Carries the command, its stderr and the path of the C file."""

    def __init__(self, message, *, command=(), stderr="", source_path=None):
        self.command = list(command)
        self.stderr = stderr
        self.source_path = source_path
        details = [message]
        if command:
            details.append("command: " + " ".join(str(c) for c in command))
        if source_path:
            details.append(f"source:  {source_path}")
        if stderr:
            details.append("compiler output:\n" + stderr.rstrip())
        super().__init__("\n".join(details))


class GradientCheckError(SymgradError, AssertionError):
    """A gradient disagrees with an independent reference. ``report`` holds the comparison."""

    def __init__(self, report):
        self.report = report
        super().__init__(str(report))


def where(loc):
    """Format a source location as the suffix ' at loss.py:12: `z = x @ y`' for messages."""
    if loc is None:
        return ""
    text = loc.text
    return f" at {loc}" + (f": `{text}`" if text else "")
