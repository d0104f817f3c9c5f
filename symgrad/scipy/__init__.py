"""``symgrad.scipy``: SciPy's names and semantics, traced when given traced values
(``symgrad.scipy.special``; ``symgrad.scipy.linalg`` is issue 16's linear algebra)."""
