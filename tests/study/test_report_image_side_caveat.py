"""A run whose max_image_side is below its dataset's need is marked in compare's tables, not dropped."""

from __future__ import annotations

import pandas as pd

from vlm_quant.study.report import caveats


def test_image_side_tag_marks_the_run_and_keeps_it_on_the_front():
    runs = pd.DataFrame(
        [
            {"run_id": "a", "tags.vlm_quant.image_side_caveat": "max_image_side=1024 is below the 2048 px"},
            {"run_id": "b", "tags.vlm_quant.image_side_caveat": None},
        ]
    )
    keys = caveats.caveat_keys(runs)
    assert keys == ["image_side", ""]
    assert caveats.marks(keys[0]) == "°" and not caveats.keeps_off_front(keys[0])
    assert caveats.keeps_off_front("resumed,image_side")
    assert caveats.legend(keys) == [f"° {caveats.IMAGE_SIDE.legend}"]


def test_a_child_that_shared_its_host_is_marked_for_its_codecarbon_figures():
    runs = pd.DataFrame(
        [
            {"run_id": "a", "tags.vlm_quant.codecarbon_shared": "shared with int8 on node7"},
            {"run_id": "b", "tags.vlm_quant.codecarbon_shared": None},
        ]
    )
    keys = caveats.caveat_keys(runs)
    assert keys == ["shared_host", ""]
    assert caveats.marks(keys[0]) == "♯" and not caveats.keeps_off_front(keys[0])
    (line,) = caveats.legend(keys)
    assert line.startswith("♯ other sweep children ran on the same host") and "whole machine's" in line
