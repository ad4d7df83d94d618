"""ServedModel from a ModelInfo: names, built-in templates, BOS handling; no torch at run time."""

from __future__ import annotations

import json
import subprocess
import sys

from tokenizers import Tokenizer

from infer_protocol import ModelInfo
from infer_server.model import ServedModel
from infer_server.templates import CHATML_TEMPLATE, LLAMA3_TEMPLATE


def info(tokenizer: Tokenizer, **kw) -> ModelInfo:
    return ModelInfo(
        request_id="x",
        served_model_names=["m"],
        context_length=128,
        tokenizer_json=tokenizer.to_str(),
        **kw,
    )


def test_names_and_model_template(smol_tokenizer, smol_template):
    model = ServedModel(info(smol_tokenizer, chat_template=smol_template), ["alias", "m"])
    assert model.names == ["m", "alias"]
    ids = model.encode_chat([{"role": "user", "content": "Hi"}])
    text = model.decode(ids, skip_special_tokens=False)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_builtin_templates_by_vocabulary(smol_tokenizer):
    assert ServedModel(info(smol_tokenizer)).template.source == CHATML_TEMPLATE
    llama = Tokenizer.from_str(smol_tokenizer.to_str())
    llama.add_special_tokens(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    assert ServedModel(info(llama)).template.source == LLAMA3_TEMPLATE
    broken = ServedModel(info(smol_tokenizer, chat_template="{% for %}"))
    assert broken.template.source == CHATML_TEMPLATE


def test_bos_is_added_to_raw_prompts_only_when_the_model_wants_it(smol_tokenizer):
    plain = ServedModel(info(smol_tokenizer, bos_token_id=1))
    assert (
        plain.encode_prompt("hello") == smol_tokenizer.encode("hello", add_special_tokens=False).ids
    )
    wants = ServedModel(info(smol_tokenizer, bos_token_id=1, add_bos_token=True))
    assert wants.encode_prompt("hello")[0] == 1
    assert wants.encode_prompt("hello")[1:] == plain.encode_prompt("hello")


def test_gateway_never_imports_torch():
    code = (
        "import sys, infer_server.app, infer_server.cli; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'infer_worker', 'infer_scheduler'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
