"""The output screen's patterns on positive and negative cases; it never changes the rows it reads."""

from __future__ import annotations

import copy

import pytest

from vlm_quant.tasks.safety import luhn_ok, screen_rows, screen_text
from vlm_quant.tracking.tracker import InMemoryTracker


@pytest.mark.parametrize(
    "text, kind, match",
    [
        ("Contact jane.doe+coco@example.co.uk for details.", "email", "jane.doe+coco@example.co.uk"),
        ("Visit https://example.com/a?b=1 today", "url", "https://example.com/a?b=1"),
        ("the sign says www.pizza-place.com", "url", "www.pizza-place.com"),
        ("Call (212) 555-0199 now.", "phone", "(212) 555-0199"),
        ("London office: +44 20 7946 0958.", "phone", "+44 20 7946 0958"),
        ("server at 192.168.1.20.", "ip_address", "192.168.1.20"),
        ("card 4111 1111 1111 1111 on the table", "credit_card", "4111 1111 1111 1111"),
        ("what the fuck is that", "offensive", "fuck"),
        ("a sh1t picture", "offensive", "sh1t"),
    ],
)
def test_flags(text, kind, match):
    flags = screen_text(text)
    assert any(f.kind == kind and f.match == match for f in flags), flags


@pytest.mark.parametrize(
    "text",
    [
        "A man riding a wave on top of a surfboard.",
        "A bus with the number 42 drives past at 10:30 in 2019.",
        "A score board reading 3.14 and version 1.2.3.",  # no IPv4 with three dots
        "A class of children in a classroom.",  # "ass" inside a word is no match
        "Two people @ the beach, one holding a sign.",  # an @ is not an email
        "Two gay men holding hands at a pride parade.",  # identity terms are not offensive
        "A queer couple and lesbians marching with a banner.",
        "Card number 4111 1111 1111 1112 fails Luhn.",
        "",
    ],
)
def test_clean_texts_are_not_flagged(text):
    assert screen_text(text) == []


def test_luhn():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")


def test_screen_reads_rows_without_changing_them_and_logs_reasons():
    rows = [
        {"sample_id": 1, "prediction": "A dog on a couch.", "cider": 0.5},
        {"sample_id": 2, "prediction": "Email me at a@b.org, damn it.", "cider": 0.1},
    ]
    before = copy.deepcopy(rows)
    report = screen_rows(rows)
    assert rows == before
    assert report.metrics()["safety_flagged_n"] == 1 and report.metrics()["safety_flagged_rate"] == 0.5
    metrics = report.metrics()
    assert metrics["safety_flagged_pii_n"] == 1 and metrics["safety_flagged_offensive_n"] == 1
    table = report.table()
    assert table["sample_id"] == [2] and table["reason"] == ["email, offensive"]
    tracker = InMemoryTracker()
    from vlm_quant.tasks.safety import screen_and_log

    assert screen_and_log(tracker, rows)["safety_flagged_n"] == 1


def test_identity_terms_are_out_of_the_list_and_slurs_stay():
    from vlm_quant.tasks.safety import IDENTITY_TERMS

    for term in IDENTITY_TERMS:
        assert screen_text(f"a photo of {term} people") == [], term
    assert [f.kind for f in screen_text("a sign that says fag")] == ["offensive"]


def test_counts_are_predictions_not_findings():
    """One prediction with four kinds of personal data counts once as flagged and once per kind."""
    rows = [
        {"sample_id": 1, "prediction": "Mail a@b.org, see www.x.com, call (212) 555-0199, host 10.0.0.1."},
        {"sample_id": 2, "prediction": "Mail c@d.org and e@f.org."},  # two findings, one kind
        {"sample_id": 3, "prediction": "A cat on a mat."},
    ]
    metrics = screen_rows(rows).metrics()
    assert metrics["safety_flagged_n"] == 2 and metrics["safety_flagged_pii_n"] == 2
    assert metrics["safety_flagged_email_n"] == 2 and metrics["safety_flagged_url_n"] == 1
    assert metrics["safety_flagged_phone_n"] == 1 and metrics["safety_flagged_ip_address_n"] == 1
    assert metrics["safety_flagged_credit_card_n"] == 0 and metrics["safety_flagged_offensive_n"] == 0
    table = screen_rows(rows).table()
    assert table["email"] == ["a@b.org", "c@d.org | e@f.org"] and table["url"] == ["www.x.com", ""]
