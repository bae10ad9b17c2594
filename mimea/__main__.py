import sys

from mimea.cli import main

sys.exit(main())
