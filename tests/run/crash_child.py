"""`vlm-quant` with every quality-pass generate() call slowed by $VLMQ_TEST_GENERATE_DELAY_S seconds.

The real CLI in a real process; the delay only widens the window in which a test sends its signal,
so that the signal lands mid-pass on a tiny model that would otherwise finish in a second.
"""

import os
import time

import vlm_quant.run.quality_pass as quality_pass
from vlm_quant.cli.commands import main

DELAY_S = float(os.environ.get("VLMQ_TEST_GENERATE_DELAY_S", "0"))
_generate = quality_pass.generate_prepared


def slow_generate(*args, **kwargs):
    time.sleep(DELAY_S)
    return _generate(*args, **kwargs)


quality_pass.generate_prepared = slow_generate

if __name__ == "__main__":
    main()
