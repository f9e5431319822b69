"""`python -m fastapi_prisma_session migrate|prune --database-url ...`"""

import sys

from .cli import main

sys.exit(main())
