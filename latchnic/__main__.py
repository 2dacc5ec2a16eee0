import sys

from latchnic.cli import main

sys.exit(main())
