import sys

from apd.cli import main

sys.exit(main())
