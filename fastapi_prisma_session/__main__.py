"""`python -m fastapi_prisma_session migrate|prune --database-url ...`: the same as the console script
`fastapi-prisma-session`."""

import sys

from .cli import MODULE_PROG, main

sys.exit(main(prog=MODULE_PROG))
