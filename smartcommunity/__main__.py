import sys

from smartcommunity.cli import main

sys.exit(main())
