"""Device tokens: random, hashed for storage, parsed from bearer metadata."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sensormesh_core.tokens import TOKEN_PREFIX, bearer_token, hash_token, new_token


def test_tokens_are_unique_and_prefixed() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(t.startswith(TOKEN_PREFIX) and len(t) >= 40 for t in tokens)


def test_hash_is_stable_and_not_the_token() -> None:
    token = new_token()
    assert hash_token(token) == hash_token(token)
    assert token.encode() not in hash_token(token)
    assert len(hash_token(token)) == 32


def test_bearer_token_is_read_case_insensitively() -> None:
    assert bearer_token([("Authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", b"bearer  abc ")]) == "abc"
    assert bearer_token([("x-other", "Bearer abc")]) is None
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token([("authorization", "Bearer ")]) is None
    assert bearer_token(None) is None


@given(st.lists(st.tuples(st.text(max_size=20), st.one_of(st.text(max_size=40), st.binary(max_size=40)))))
def test_bearer_token_never_raises_on_arbitrary_metadata(metadata: list[tuple[str, str | bytes]]) -> None:
    token = bearer_token(metadata)
    assert token is None or (token and token == token.strip())
