import sys

from scalable_pipeline.cli import main

sys.exit(main())
