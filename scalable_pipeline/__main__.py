import sys

from scalable_pipeline.cli.main import main

sys.exit(main())
