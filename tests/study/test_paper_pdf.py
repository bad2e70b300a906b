"""The paper and the slides compiled with a real TeX installation, then read back from the PDF.

pdftotext gives the text a reader sees: every number the prose states must be there exactly as the
store gives it at the printed precision; pdfinfo the page count; the LaTeX log and pdfimages that each
figure went in; pdffonts that every font is embedded. Skipped where TeX or poppler is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from paper_checks import check_numbers
from report_store import _params, caption_rows, cost_metrics, environment
from test_paper_prose import store_values

from vlm_quant.study.paper.build import build_draft, load_study

TOOLS = ("pdftotext", "pdfinfo", "pdffonts", "pdfimages")
MISSING = [t for t in TOOLS if not shutil.which(t)] + (
    [] if shutil.which("latexmk") or shutil.which("pdflatex") else ["latexmk or pdflatex"]
)
pytestmark = [
    pytest.mark.tex,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"needs TeX and poppler: {', '.join(MISSING)} not found (Debian: apt-get install "
        "texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended latexmk poppler-utils)",
    ),
]


def pdf_text(pdf) -> str:
    # -raw: the order TeX wrote the text in, so a table set beside a paragraph (the first page's
    # quality table beside the abstract) is not read into the middle of its sentences
    command = ["pdftotext", "-raw", str(pdf), "-"]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return " ".join(text.split())


def pages(pdf) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


def assert_fonts_embedded(pdf) -> None:
    rows = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    fonts = rows.splitlines()[2:]
    assert fonts, "no font listed"
    for line in fonts:
        # columns: name type encoding emb sub uni object ID (type may hold a space: "Type 1C")
        assert re.search(r"\s(yes|no)\s+(yes|no)\s+(yes|no)\s+\d+\s+\d+$", line), line
        emb = re.search(r"\s(yes|no)\s+(yes|no)\s+(yes|no)\s+\d+\s+\d+$", line).group(1)
        assert emb == "yes", f"font not embedded: {line}"


def assert_figures_embedded(tex_path) -> int:
    tex = tex_path.read_text()
    log = tex_path.with_suffix(".log").read_text(errors="replace")
    included = re.findall(r"\\includegraphics\[[^\]]*\]\{([^}]+)\}", tex)
    assert included
    for path in included:
        assert (tex_path.parent / path).is_file(), path
        assert f"<use {path}>" in log or f"<{path}," in log, f"{path} not embedded"
    return len(included)


@pytest.fixture(scope="module")
def paper(caption_study):
    return build_draft(caption_study, "paper")


@pytest.fixture(scope="module")
def slides(caption_study):
    return build_draft(caption_study, "slides")


def test_paper_compiles_to_four_to_eight_pages_with_figures_and_fonts_embedded(paper):
    pdf = paper.compiled.pdf
    assert pdf is not None and pdf.is_file()
    # body and references in 4-6 pages, the appendix after them; tables split by topic (8 pt and
    # up, see test_paper_layout) take more room than one table shrunk to 3 pt did
    assert 4 <= pages(pdf) <= 8
    n_figures = assert_figures_embedded(paper.folder / "paper.tex")
    assert n_figures >= 3  # trade-off plots, power trace, qualitative examples
    text = pdf_text(pdf)
    assert len(set(re.findall(r"Figure (\d+):", text))) == n_figures  # every figure typeset with its caption
    images = subprocess.run(
        ["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert len(images.splitlines()) > 2, "the example images are not in the PDF"
    assert_fonts_embedded(pdf)


def test_every_number_the_pdf_states_equals_the_store_value(paper, caption_study, caption_store):
    records = json.loads((paper.folder / "numbers.json").read_text())
    check_numbers(records, store_values(caption_store, caption_study))
    text = pdf_text(paper.compiled.pdf)
    for record in records:
        assert record["text"] in text, record
    # whole statements survive typesetting (the arrow, the interval kept on one line)
    fp16, nf4 = caption_store.runs["fp16"].metrics, caption_store.runs["nf4"].metrics
    a, b = fp16["peak_vram_allocated_mib"], nf4["peak_vram_allocated_mib"]
    assert (
        f"cut peak VRAM by {(a - b) / a * 100:.1f}% ({a:.0f} → {b:.0f} MiB) at a CIDEr change of -0.100 "
        "[-0.100, -0.100]" in text
    )
    for section in (
        "Abstract",
        "Introduction",
        "Methods",
        "Results",
        "Qualitative examples",
        "Discussion",
        "Conclusion",
        "References",
        "Reproducibility",
    ):
        assert section in text, section
    assert text.count("[To write:") >= 5


def test_slides_compile_to_about_eight_frames_from_the_same_numbers(slides, caption_study, caption_store):
    pdf = slides.compiled.pdf
    assert pdf is not None and 7 <= pages(pdf) <= 9
    assert_figures_embedded(slides.folder / "slides.tex")
    assert_fonts_embedded(pdf)
    records = json.loads((slides.folder / "numbers.json").read_text())
    check_numbers(records, store_values(caption_store, caption_study))
    text = pdf_text(pdf)
    for record in records:
        assert record["text"] in text, record
    for title in ("Problem", "Setup", "Results", "Quality versus cost", "Energy and power", "Takeaways"):
        assert title in text


def test_store_strings_with_latex_specials_compile_verbatim(store_writer, tmp_path):
    """A model id, prompt and run label full of LaTeX specials typeset as written."""
    model, prompt = "org/Model_v2&co #1", "50% of {the} image ~ ^caption$ \\n"
    root = store_writer.root
    exp = store_writer.experiment("specials")
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 1.2, 6)
    ids = {}
    for quant, scores, scale in (("fp16", base, 1.0), ("int8", base - 0.05, 0.7)):
        rows = caption_rows(scores, [f"a_b & c {i}" for i in range(6)])
        params = _params(quant, "pretrained", root / "data", model=model, prompt=prompt, n_samples="6")
        metrics = {"cider": float(np.mean(scores)), **cost_metrics(scale)}
        ids[quant] = store_writer.run(
            exp, f"{quant}_&%", params=params, metrics=metrics, rows=rows, env=environment()
        )
    study = load_study(tmp_path, experiment="specials", tracking_uri=store_writer.uri, n_resamples=200)
    draft = build_draft(study, "paper")
    text = pdf_text(draft.compiled.pdf)
    squeezed = text.replace(" ", "")  # a line break inside the model id becomes a space in pdftotext
    assert model.replace(" ", "") in squeezed
    assert "50% of {the} image ~ ^caption$ \\n" in text
