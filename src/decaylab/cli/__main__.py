import sys

from decaylab.cli import main

sys.exit(main())
