"""``python -m loadtests run|cascade|rollout [options]``: see ``loadtests/run.py``, ``loadtests/cascade_run.py``
and ``loadtests/rollout_run.py``."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "cascade":
    from loadtests.cascade_run import main as cascade

    sys.exit(cascade(sys.argv[2:]))
if len(sys.argv) > 1 and sys.argv[1] == "rollout":
    from loadtests.rollout_run import main as rollout

    sys.exit(rollout(sys.argv[2:]))

from loadtests.run import main

sys.exit(main())
