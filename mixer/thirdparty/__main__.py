"""``python -m mixer.thirdparty [NAME...]``: build the missing programs, print their paths."""

import sys

from mixer.thirdparty._build import main

sys.exit(main())
