"""Compile the clinical rules with mypyc, or say which rules this machine runs.

    python -m scheduling.compile_rules build    # the build for the current sources, unless present
    python -m scheduling.compile_rules status   # exit 0 when the compiled rules are in use

See scheduling/rules/_native.py. Outside the rules package so that ``-m`` does not run a module
the package has already imported.
"""

import sys

from scheduling.rules._native import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
