import sys

from valerix_localcloud.cli import main

sys.exit(main())
