"""Pure parts: incremental detokenizer, stop-string matcher, chat templates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infer_server.detokenizer import IncrementalDetokenizer
from infer_server.stops import StopMatcher
from infer_server.templates import CHATML_TEMPLATE, LLAMA3_TEMPLATE, ChatTemplate, TemplateError

TEXTS = [
    "Hello, world! 😀👍🏽 你好，世界。 Ünïcödé — ok",
    "日本語のテキストと emoji 🎉🎉 mixed\nnew lines\ttabs",
    "<|im_start|>user\nhi<|im_end|> plain",
]


@pytest.mark.parametrize("text", TEXTS)
def test_detokenizer_streams_whole_characters_and_matches_full_decode(smol_tokenizer, text):
    ids = smol_tokenizer.encode(text, add_special_tokens=False).ids
    detok = IncrementalDetokenizer(smol_tokenizer)
    pieces = [detok.push([i]) for i in ids]
    pieces.append(detok.flush())
    assert "".join(pieces) == smol_tokenizer.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in pieces)


def test_detokenizer_holds_back_a_split_emoji(smol_tokenizer):
    ids = smol_tokenizer.encode("😀", add_special_tokens=False).ids
    assert len(ids) > 1  # byte-level pieces of one character
    detok = IncrementalDetokenizer(smol_tokenizer)
    assert [detok.push([i]) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert detok.push(ids[-1:]) == "😀"


def test_detokenizer_flushes_broken_bytes_at_the_end(smol_tokenizer):
    ids = smol_tokenizer.encode("😀", add_special_tokens=False).ids
    detok = IncrementalDetokenizer(smol_tokenizer)
    assert detok.push(ids[:1]) == ""
    assert detok.flush() == smol_tokenizer.decode(ids[:1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=49151), max_size=30), st.integers(1, 4))
def test_detokenizer_any_ids_any_chunking(smol_tokenizer, ids, chunk):
    detok = IncrementalDetokenizer(smol_tokenizer)
    out = "".join(detok.push(ids[i : i + chunk]) for i in range(0, len(ids), chunk)) + detok.flush()
    assert out == smol_tokenizer.decode(ids, skip_special_tokens=True)


def feed(matcher: StopMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.push(p) for p in pieces)
    return out + matcher.flush()


def test_stop_spanning_pieces_is_cut_and_held_back():
    m = StopMatcher(["END"])
    assert m.push("abc E") == "abc "
    assert m.push("N") == ""
    assert m.push("Dtail") == ""
    assert m.stopped and m.matched == "END"


def test_stop_false_start_is_released():
    m = StopMatcher(["END"])
    assert m.push("xEN") == "x"
    assert m.push("o") == "ENo"
    assert not m.stopped
    assert m.flush() == ""


def test_earliest_of_several_stops_wins():
    m = StopMatcher(["world", "lo w"])
    assert feed(m, ["hel", "lo wor", "ld"]) == "hel"
    assert m.matched == "lo w"


def test_no_stops_passes_everything():
    m = StopMatcher([])
    assert feed(m, ["a", "b"]) == "ab"


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="abcE D", max_size=40),
    st.lists(st.text(alphabet="abcED", min_size=1, max_size=4), min_size=1, max_size=3),
    st.integers(1, 5),
)
def test_stop_matcher_cuts_right_before_a_stop_and_never_shows_one(text, stops, chunk):
    m = StopMatcher(stops)
    out = feed(m, [text[i : i + chunk] for i in range(0, len(text), chunk)])
    assert text.startswith(out)
    assert not any(s in out for s in stops)
    if m.stopped:
        assert text[len(out) :].startswith(m.matched)
    else:
        assert out == text
    # whole text at once: the earliest stop wins
    whole = StopMatcher(stops)
    hits = [text.find(s) for s in stops if s in text]
    assert feed(whole, [text]) == (text[: min(hits)] if hits else text)


def test_smollm2_template_renders_chatml(smol_template):
    t = ChatTemplate(smol_template)
    out = t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert out.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert "You are a helpful AI assistant named SmolLM" in out  # its default system prompt
    no_prompt = t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    assert no_prompt.endswith("<|im_end|>\n")


def test_builtin_llama3_template():
    t = ChatTemplate(LLAMA3_TEMPLATE)
    out = t.render(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        bos_token="<|begin_of_text|>",
    )
    assert out == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_builtin_chatml_template():
    out = ChatTemplate(CHATML_TEMPLATE).render([{"role": "user", "content": "U"}])
    assert out == "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


def test_raise_exception_and_sandbox_become_template_errors():
    t = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"
    )
    assert t.render([{"role": "user", "content": "x"}]) == "ok"
    with pytest.raises(TemplateError, match="first must be user"):
        t.render([{"role": "system", "content": "x"}])
    evil = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        evil.render([])
    with pytest.raises(TemplateError):
        ChatTemplate("{% for %}")
