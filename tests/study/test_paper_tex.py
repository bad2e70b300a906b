"""Escaping of store strings, the compile fallback without TeX, and LaTeX log errors (no TeX needed)."""

from __future__ import annotations

import re

import pytest

from vlm_quant.errors import UserError
from vlm_quant.study.paper import compile as tex_compile
from vlm_quant.study.paper.document import preamble
from vlm_quant.study.paper.tex import Stated, placeholder, tex_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HuggingFaceTB/SmolVLM_256M", r"HuggingFaceTB/SmolVLM\_256M"),
        ("50% & more #1 $5", r"50\% \& more \#1 \$5"),
        ("{a}~b^c", r"\{a\}\textasciitilde{}b\textasciicircum{}c"),
        ("C:\\path", r"C:\textbackslash{}path"),
        ("a<b>c|d", r"a\textless{}b\textgreater{}c\textbar{}d"),
        ("ΔCIDEr † → ±", r"$\Delta$CIDEr \dag{} $\rightarrow$ $\pm$"),
        ("café naïve", "café naïve"),  # Latin-1: typeset by inputenc + T1
        ("ﬁne", "fine"),  # compatibility ligature decomposed
        ("中文 🙂", "[U+4E2D][U+6587] [U+1F642]"),  # no glyph in pdflatex: visible code points
        ("tab\there\x07", "tab\there "),
    ],
)
def test_tex_text_escapes_every_special_the_store_can_hold(raw, expected):
    assert tex_text(raw) == expected


def test_escaped_text_has_no_bare_special_left():
    nasty = r"prompt: 100% _of_ {the} #image & \n ~ ^ $x$ <|im_end|>"
    out = tex_text(nasty)
    assert not re.search(r"(?<!\\)[%_#&$]", out)
    unescaped_braces = re.sub(r"\\[a-z]+\{\}", "", out).replace(r"\{", "").replace(r"\}", "")
    assert "{" not in unescaped_braces and "}" not in unescaped_braces


def test_placeholder_is_a_marked_macro_with_escaped_text():
    assert placeholder("why 50% & more") == r"\placeholder{why 50\% \& more}"


def test_stated_numbers_keep_the_printed_text_and_the_full_value():
    stated = Stated()
    assert stated.num(1149.6, ".0f", "metric:r1:peak_vram_allocated_mib") == "1150"
    assert stated.num(-0.0001, ".3f", "delta:r1:delta") == "0.000"  # no "-0.000"
    assert stated.as_records()[0] == {
        "text": "1150",
        "value": 1149.6,
        "source": "metric:r1:peak_vram_allocated_mib",
    }


def test_template_preamble_or_class(tmp_path):
    pre = tmp_path / "mine.tex"
    pre.write_text("\\documentclass{IEEEtran}\n\\usepackage{cite}\n\\begin{document}\nignored\n")
    assert preamble(pre, tmp_path) == "\\documentclass{IEEEtran}\n\\usepackage{cite}\n"
    cls = tmp_path / "src" / "myconf.cls"
    cls.parent.mkdir()
    cls.write_text("\\LoadClass{article}\n")
    out_dir = tmp_path / "paper"
    out_dir.mkdir()
    assert preamble(cls, out_dir) == "\\documentclass{myconf}\n"
    assert (out_dir / "myconf.cls").is_file()
    assert "twocolumn" in preamble(None, tmp_path)


def test_without_tex_the_sources_stay_and_the_message_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(tex_compile.shutil, "which", lambda name: None)
    tex = tmp_path / "paper.tex"
    tex.write_text("\\documentclass{article}\\begin{document}x\\end{document}")
    outcome = tex_compile.compile_pdf(tex)
    assert outcome.pdf is None and outcome.engine is None
    assert "texlive-latex-recommended" in outcome.message and "latexmk" in outcome.message


LOG = """This is pdfTeX, Version 3.141592653
(./paper.tex
LaTeX2e <2022-11-01>
./paper.tex:12: Undefined control sequence.
l.12 We cut VRAM \\bogus
                        {} by half.
The control sequence at the end of the top line
of your error message was never \\def'ed.
! Emergency stop.
<*> paper.tex
"""


def test_log_errors_keep_the_error_and_its_source_line():
    lines = tex_compile.log_errors(LOG)
    assert lines[0] == "./paper.tex:12: Undefined control sequence."
    assert any(line.startswith("l.12") for line in lines)
    assert "! Emergency stop." in lines
    assert not any("pdfTeX" in line for line in lines)


def test_a_failed_build_is_a_user_error_quoting_the_log(tmp_path, monkeypatch):
    tex = tmp_path / "paper.tex"
    tex.write_text("x")
    (tmp_path / "paper.log").write_text(LOG)
    monkeypatch.setattr(tex_compile.shutil, "which", lambda name: "/usr/bin/" + name)

    class Failed:
        returncode, stdout = 12, "latexmk: errors"

    monkeypatch.setattr(tex_compile.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(UserError) as err:
        tex_compile.compile_pdf(tex)
    message = str(err.value)
    assert (
        "Undefined control sequence" in message
        and "l.12" in message
        and str(tmp_path / "paper.log") in message
    )
    assert "Traceback" not in message
