import sys

from pushy_shard.bench.cli import main

sys.exit(main())
