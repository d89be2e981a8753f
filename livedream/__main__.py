import sys

from livedream.cli import main

sys.exit(main())
