"""Reading the C symgrad generates, for the tests that check its shape."""
import re

# A function's workspace, as it asks for it on entry: a kept block of ``_ws_bytes`` bytes, or
# (small and of a fixed size) an array on the stack (codegen.STACK_WORKSPACE_MAX).
_WORKSPACE = re.compile(r"_ws_bytes = \(size_t\)(\d+);|\bchar _ws\[(\d+)\]")


def workspace_bytes(source, after="_value_and_grad("):
    """The workspace, in bytes, of the first function in ``source`` from the text ``after`` on
    (by default the value-and-gradient function)."""
    found = _WORKSPACE.search(source, source.index(after))
    return int(found.group(1) or found.group(2))
