"""`vlm-quant` with every quality-pass generate() call slowed by $VLMQ_TEST_GENERATE_DELAY_S seconds.

The real CLI in a real process; the delay only widens the window in which a test sends its signal,
so that the signal lands mid-pass on a tiny model that would otherwise finish in a second. With
$VLMQ_TEST_LOAD_STALL_AFTER = k, the process that opens the images (an input-pipeline worker) stalls for
a minute from its (k+1)-th image on: a worker busy at the moment its parent is killed (as one opening
a large image, or blocked writing a batch, is) has no chance to notice the death by itself.
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

STALL_AFTER = int(os.environ.get("VLMQ_TEST_LOAD_STALL_AFTER", "-1"))
_load_image = quality_pass.load_image
_loaded = []


def stalling_load(*args, **kwargs):
    _loaded.append(1)
    if 0 <= STALL_AFTER < len(_loaded):
        time.sleep(60.0)
    return _load_image(*args, **kwargs)


quality_pass.load_image = stalling_load

if __name__ == "__main__":
    main()
