"""`python -m livedream.bench [--quick] ...`: the suite without the `livedream` command."""

import sys

from livedream.bench import main

sys.exit(main())
