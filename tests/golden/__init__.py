"""Golden files: PyTorch's and SciPy's answers on fixed inputs, frozen with their versions, so
that the parity checks run where neither library is installed (cases.py holds the
cases, make_golden.py writes the files, tests/test_golden.py reads them)."""
