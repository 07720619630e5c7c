"""Masking secret values in output that arrives in pieces, and their environment names."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from leasehold.scheduler.masking import StreamMasker, env_name, env_value, mask, masked_texts


def test_env_names_and_values() -> None:
    assert env_name("deploy-key.v2") == "LEASEHOLD_SECRET_DEPLOY_KEY_V2"
    assert env_name("db_Pass") == "LEASEHOLD_SECRET_DB_PASS"
    assert env_value("s3cret") == "s3cret"
    assert env_value({"user": "u", "n": 1}) == '{"user":"u","n":1}'


def test_an_object_secret_masks_each_string_leaf_and_its_json_text() -> None:
    texts = masked_texts([{"user": "admin", "keys": ["k-123", {"deep": "d-456"}], "port": 1},
                          "plain", ""])
    assert set(texts) == {"admin", "k-123", "d-456", "plain",
                          '{"user":"admin","keys":["k-123",{"deep":"d-456"}],"port":1}'}
    assert texts[0].startswith("{")  # longest first
    assert mask("user admin key k-123", texts) == "user *** key ***"


def test_a_value_split_over_pieces_is_masked_and_other_output_passes_at_once() -> None:
    masker = StreamMasker(["hunter2"])
    assert masker.feed("password: hun") == "password: "  # "hun" may begin the secret
    assert masker.feed("ter2 ok\n") == "*** ok\n"
    assert masker.feed("nothing to hold\n") == "nothing to hold\n"
    assert masker.feed("h") == ""
    assert masker.feed("ello") == "hello"
    assert masker.feed("hunt") == ""
    assert masker.end() == "hunt"  # the output ended: it never became the secret


@given(st.text(alphabet="ab\n", max_size=60),
       st.lists(st.text(alphabet="ab\n", min_size=2, max_size=5), min_size=1, max_size=3),
       st.lists(st.integers(min_value=0, max_value=60), max_size=10))
def test_no_split_of_the_output_lets_a_value_through(
        text: str, secrets: list[str], cuts: list[int]) -> None:
    masker = StreamMasker(masked_texts(secrets))
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    out = "".join(masker.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    out += masker.end()
    for secret in secrets:
        assert secret not in out
    if not any(secret in text for secret in secrets):
        assert out == text  # nothing to mask: every character passes, none is lost
