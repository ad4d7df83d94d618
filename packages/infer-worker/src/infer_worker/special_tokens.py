"""Which token ids end generation."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer

# End-of-turn markers of common chat formats; any present as a special token also stops.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
)


def stop_token_ids(tokenizer: Tokenizer, declared: Iterable[int | None]) -> list[int]:
    """The declared eos ids plus every end-of-turn marker the tokenizer has as a special token.

    Order is preserved (declared first), without duplicates.
    """
    ids: list[int] = [int(i) for i in declared if i is not None]
    special = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    ids.extend(special[name] for name in END_OF_TURN_TOKENS if name in special)
    return list(dict.fromkeys(ids))
