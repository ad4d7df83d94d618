"""Models, health, readiness, version, tokenizer and metrics endpoints."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from infer_protocol import PROTOCOL_VERSION

from .. import __version__
from ..errors import bad_request
from ..fields import DETOKENIZE_FIELDS, TOKENIZE_FIELDS, refuse_unknown
from ..http import read_json
from ..metrics import engine_json, system_metrics
from ..model import ServedModel
from ..pool_metrics import combine, engines_json, query_all
from ..state import Gateway, gateway
from ..templates import TemplateError
from ..tools import parse_tools
from ..validation import get_bool, get_str, parse_messages, token_id


async def health(request: Request) -> Response:
    return JSONResponse({"status": "healthy", "mode": "api_server", "version": __version__})


async def ready(request: Request) -> Response:
    """200 while every model name known has a ready engine (and the gateway is not draining)."""
    gw = gateway(request)
    ok = gw.pool.ready() and not gw.drain.draining
    body: dict = {"ready": ok, "engine_connected": gw.pool.any_ready}
    if gw.drain.draining:
        body["detail"] = "the gateway is shutting down"
    elif not ok:
        body["detail"] = gw.pool.problem()
    return JSONResponse(body, status_code=200 if ok else 503)


async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__, "protocol_version": PROTOCOL_VERSION})


def _model_card(model: ServedModel, name: str) -> dict:
    return {
        "id": name,
        "object": "model",
        "created": model.created,
        "owned_by": "infer",
        "max_model_len": model.context_length,
    }


async def models(request: Request) -> Response:
    """The union of every engine's model names (a name whose engines are down included)."""
    gw = gateway(request)
    gw.require_model(None)
    cards = [_model_card(gw.models.require(n), n) for n in gw.models.names]
    return JSONResponse({"object": "list", "data": cards})


async def model(request: Request) -> Response:
    """GET /v1/models/{id}: one model card (the openai client's models.retrieve)."""
    name = request.path_params["model_id"]
    served = gateway(request).require_model(name)
    return JSONResponse(_model_card(served, name))


def _optional_model(gw: Gateway, body: dict):
    return gw.require_model(get_str(body, "model", None))


async def tokenize(request: Request) -> Response:
    gw = gateway(request)
    body = await read_json(request, gw.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    refuse_unknown(body, TOKENIZE_FIELDS)
    model = _optional_model(gw, body)
    if "messages" in body and body.get("messages") is not None:
        if body.get("add_special_tokens") is not None:
            raise bad_request(
                "'add_special_tokens' applies to 'prompt'; the chat template places special tokens",
                "add_special_tokens",
            )
        messages = parse_messages(body)
        add = get_bool(body, "add_generation_prompt", True)
        spec = parse_tools({"tools": body.get("tools")})
        try:
            text = await gw.offload.run(
                model.render_chat, messages, add, spec.tools if spec else None
            )
        except TemplateError as exc:
            raise bad_request(str(exc), "messages") from None
        bos = None
    else:
        text = get_str(body, "prompt")
        bos = model.prompt_bos(get_bool(body, "add_special_tokens", True))
    count, ids = await gw.offload.ids_json(model.tokenizer, model.info.tokenizer_json, text, bos)
    tail = f',"count":{count},"max_model_len":{model.context_length}}}'.encode()
    return Response(b'{"tokens":' + ids + tail, media_type="application/json")


async def detokenize(request: Request) -> Response:
    gw = gateway(request)
    body = await read_json(request, gw.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    refuse_unknown(body, DETOKENIZE_FIELDS)
    model = _optional_model(gw, body)
    raw = body.get("tokens")
    tokens = [token_id(t) for t in raw] if isinstance(raw, list) else None
    if tokens is None or not all(t is not None and t < model.vocab_size for t in tokens):
        raise bad_request(
            f"'tokens' must be an array of token ids in [0, {model.vocab_size})", "tokens"
        )
    # special tokens stay, so that tokenize -> detokenize gives the text back
    return JSONResponse({"prompt": await gw.offload.run(model.decode, tokens, False)})


async def v1_metrics(request: Request) -> Response:
    """The seed's shape for the pool's totals, and an `engines` list (one entry per engine)."""
    gw = gateway(request)
    answers = await query_all(gw.pool)
    engine, cache = engine_json(combine(answers))
    return JSONResponse(
        {
            **system_metrics(gw.metrics.gpu),
            "engine": engine,
            "cache": cache,
            "engines": engines_json(gw.pool, answers),
        }
    )


async def prometheus(request: Request) -> Response:
    gw = gateway(request)
    answers = await query_all(gw.pool)
    latest = combine(answers)
    if latest is not None or not gw.pool.any_ready:
        gw.metrics.engine.latest = latest
    gw.metrics.pending.set(sum(e.client.running for e in gw.pool.engines))
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)
