import sys

from pushy_shard.cli import main

sys.exit(main())
