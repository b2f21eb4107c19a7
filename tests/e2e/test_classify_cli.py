"""`clamor classify` as a user runs it: JSON lines in, one verdict line per post out, problems on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

KEYS = ["id", "is_complaint", "complaint_score", "severity", "category", "language", "risk_flags"]

TEXTS = [
    "My parcel from Quickship has been stuck at the depot for nine days and nobody replies",
    "What a lovely sunset over the bay tonight",
    "The Nimbus app logged me out again and now my password reset email never arrives",
    "Anyone recommend a good pizza place near the station?",
    "Third time this month the Volta router drops the connection, I want a refund",
    "Just finished a great book about the history of tea",
    "They billed me for a subscription I cancelled in March and keep refusing to refund it",
    "Our team is hiring a junior designer, DM me for details",
    "Fridge from Coldline arrived dented and the courier just left it in the rain",
    "Happy birthday to my little sister!",
    "订单显示已签收，但我根本没收到快递，客服也不理人",
    "周末去公园野餐，天气特别好",
    "充电宝用了一周就鼓包了，商家还不给退",
    "有人知道这家书店几点关门吗？",
    "手机欠费停机了，可我明明交过话费，营业厅说查不到",
    "今天学会了做红烧肉，家人都说好吃",
    "外卖晚了一个半小时，饭菜全凉了，平台只给两块钱补偿",
    "新学期开始了，大家加油",
    "银行卡莫名其妙被扣了年费，打电话一直转人工失败",
    "晚上的音乐会真精彩",
    "届いたテレビの画面が割れていたのに、交換に一ヶ月かかると言われた",
    "桜がきれいに咲いていました",
    "アプリが何度も落ちて予約ができない。サポートは返信なし",
    "おすすめのラーメン屋さんを教えてください",
    "解約したはずの月額料金がまだ引き落とされている",
    "週末は友達とカラオケに行きます",
    "配達予定日を三日過ぎても荷物が届かない。問い合わせても定型文だけ",
    "新しい靴を買いました。とても履きやすいです",
    "ホテルの部屋が予約と違うのにフロントは謝りもしない",
    "今日は一日中雨でした",
    "Интернет не работает уже третий день, а провайдер только обещает",
    "Вчера ходили в театр, очень понравилось",
    "Курьер потерял мою посылку и теперь никто не хочет возвращать деньги",
    "Подскажите хороший фильм на вечер",
    "Списали деньги за доставку дважды, поддержка молчит",
    "С днём рождения, мама!",
    "Купил пылесос, через неделю сломался, в сервисе говорят ждать месяц",
    "На выходных поедем на дачу",
    "Банк заблокировал карту без объяснений, в чате отвечает бот",
    "Отличная погода для прогулки",
]
IDS = [f"post-{n:02d}" for n in range(len(TEXTS))]
MALFORMED_LINE = 8
EMPTY_TEXT_LINE = 23


def clamor(*args: str) -> list[str]:
    return [sys.executable, "-c", "from services.cli import main; main()", *args]


def good_lines() -> list[str]:
    return [json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in zip(IDS, TEXTS, strict=True)]


def input_with_problems() -> str:
    """The 40 posts, with a broken line at MALFORMED_LINE and an empty text at EMPTY_TEXT_LINE."""
    lines = good_lines()
    lines.insert(MALFORMED_LINE - 1, '{"id": "broken", "text": "no closing brace"')
    lines.insert(EMPTY_TEXT_LINE - 1, json.dumps({"id": "empty", "text": "   "}))
    return "\n".join(lines) + "\n"


def run_classify(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        clamor("classify", *args), input=stdin, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def verdicts(stdout: str) -> list[dict[str, Any]]:
    assert stdout.endswith("\n")
    return [json.loads(line) for line in stdout.split("\n")[:-1]]


@pytest.fixture(scope="module")
def model_run() -> subprocess.CompletedProcess[str]:
    return run_classify(input_with_problems())


@pytest.fixture(scope="module")
def rules_run() -> subprocess.CompletedProcess[str]:
    return run_classify(input_with_problems(), "--rules")


def test_stdout_is_one_verdict_line_per_good_post(model_run: subprocess.CompletedProcess[str]) -> None:
    out = verdicts(model_run.stdout)
    assert len(out) == 40
    assert all(list(verdict) == KEYS for verdict in out)


def test_verdicts_come_out_in_input_order(model_run: subprocess.CompletedProcess[str]) -> None:
    assert [verdict["id"] for verdict in verdicts(model_run.stdout)] == IDS


def test_verdict_fields_have_their_documented_types(model_run: subprocess.CompletedProcess[str]) -> None:
    out = verdicts(model_run.stdout)
    assert {v["severity"] for v in out} <= {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    assert {v["language"] for v in out} == {"en", "zh", "ja", "ru"}
    assert all(0.0 <= v["complaint_score"] <= 1.0 and isinstance(v["is_complaint"], bool) for v in out)
    assert all(v["category"] == "" for v in out if not v["is_complaint"])
    assert any(v["is_complaint"] for v in out)
    assert not all(v["is_complaint"] for v in out)


def test_stderr_names_the_lines_that_were_skipped(model_run: subprocess.CompletedProcess[str]) -> None:
    assert f"line {MALFORMED_LINE}: expected a JSON object" in model_run.stderr
    assert f"line {EMPTY_TEXT_LINE}: empty text" in model_run.stderr


def test_rules_write_the_same_lines_without_the_model(rules_run: subprocess.CompletedProcess[str]) -> None:
    out = verdicts(rules_run.stdout)
    assert [verdict["id"] for verdict in out] == IDS
    assert all(list(verdict) == KEYS for verdict in out)
    assert all(verdict["category"] == "" for verdict in out)
    assert f"line {MALFORMED_LINE}: expected a JSON object" in rules_run.stderr


def test_quiet_prints_nothing_on_stderr_for_good_input() -> None:
    # A batch size under the input's length: verdicts must keep their order across batches too.
    done = run_classify("\n".join(good_lines()) + "\n", "--quiet", "--batch-size", "16")
    assert done.stderr == ""
    assert [verdict["id"] for verdict in verdicts(done.stdout)] == IDS


def test_a_risk_flag_is_written_by_its_short_name() -> None:
    done = run_classify(
        json.dumps({"id": 7, "text": "I'm calling my lawyer about the double charge"}) + "\n", "--rules"
    )
    [verdict] = verdicts(done.stdout)
    assert verdict["id"] == 7
    assert verdict["risk_flags"] == ["legal_threat"]
    assert verdict["is_complaint"]
    assert verdict["severity"] in {"HIGH", "CRITICAL"}


def test_a_null_text_is_skipped() -> None:
    stdin = json.dumps({"id": "null", "text": None}) + "\n" + good_lines()[0] + "\n"
    done = run_classify(stdin, "--rules", "--quiet")
    assert [verdict["id"] for verdict in verdicts(done.stdout)] == [IDS[0]]
    assert "line 1" in done.stderr
