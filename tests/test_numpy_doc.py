"""docs/numpy.md is what ``symgrad.tools.numpy_doc`` renders from the registry, and a name
symgrad lacks fails with an error that names it and what is close."""
from pathlib import Path

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
import symgrad.scipy.special as sps
from symgrad.errors import TracingError, UnsupportedError
from symgrad.frontend.tracer import IMPLEMENTATIONS
from symgrad.tools import numpy_doc

DOC = Path(__file__).resolve().parent.parent / "docs" / "numpy.md"


def test_docs_numpy_md_is_current():
    assert DOC.read_text() == numpy_doc.render(), (
        "docs/numpy.md is stale: python -m symgrad.tools.numpy_doc > docs/numpy.md")


def test_every_registered_name_is_listed():
    text = DOC.read_text()
    for name in IMPLEMENTATIONS:
        if "." in name or name in snp.__all__:
            shown = name if name.split(".")[0] in snp.__all__ else name.rsplit(".", 1)[-1]
            assert f"| `{shown}` |" in text, name


def test_notes_name_supported_functions():
    assert set(numpy_doc.NOTES) <= set(IMPLEMENTATIONS)


def test_missing_snp_name_is_a_clear_error():
    with pytest.raises(UnsupportedError, match=r"symgrad\.numpy\.logaddexp3 is not supported "
                                               r"yet.*Closest supported: logaddexp, logaddexp2"):
        snp.logaddexp3
    assert not hasattr(snp, "logaddexp3")           # an AttributeError too
    with pytest.raises(AttributeError):
        snp._private_name
    with pytest.raises(UnsupportedError, match=r"symgrad\.scipy\.special\.erfcx .*erfc"):
        sps.erfcx


def test_missing_numpy_function_on_a_tracer_is_a_clear_error():
    f = symgrad.compile(lambda x: np.sum(np.spacing(x)), backend="interp")
    with pytest.raises(TracingError,
                       match=r"numpy\.spacing is not supported on traced values yet.*numpy\.md"):
        f(np.ones(3))
    f = symgrad.compile(lambda x: snp.exp3(x), backend="interp")
    with pytest.raises(UnsupportedError, match=r"exp3 .*Closest supported: exp"):
        f(np.ones(3))


def test_names_listed_as_not_traced_yet_are_not_traced():
    """The page's 'Not traced yet' table stays honest: a name it lists has no implementation."""
    from symgrad.frontend.tracer import IMPLEMENTATIONS
    from symgrad.tools.numpy_doc import NOT_YET
    listed = [n for names in NOT_YET for n in names.split(", ")]
    assert listed and not [n for n in listed if n in IMPLEMENTATIONS]
