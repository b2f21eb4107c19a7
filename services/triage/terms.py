"""The term tables behind the RuleClassifier, by flag or cue and language.

A term ending in ``*`` is a stem (``refund*`` matches "refunds", "refunded"); Latin and
Cyrillic terms match at word starts, Chinese and Japanese terms anywhere (no spaces there).
Terms are ours and deliberately plain: they are read by care teams auditing a verdict.
"""

from __future__ import annotations

from typing import TypeAlias

from clamor.v1 import triage_pb2

RiskFlag: TypeAlias = triage_pb2.RiskFlag.ValueType

# fmt: off
RISK_TERMS: dict[RiskFlag, dict[str, tuple[str, ...]]] = {
    triage_pb2.RISK_FLAG_LEGAL_THREAT: {
        "en": (
            "lawyer*", "lawsuit*", "attorney*", "sue", "suing", "class action", "small claims", "legal action",
            "see you in court", "take you to court", "solicitor*",
        ),
        "zh": (
            "律师", "起诉", "法院", "诉讼", "打官司", "法律途径",
        ),
        "ja": (
            "弁護士", "訴訟", "訴え", "裁判", "法的措置",
        ),
        "ru": (
            "адвокат*", "юрист*", "суд", "в суд", "иск*", "судебн*",
        ),
    },
    triage_pb2.RISK_FLAG_REGULATOR: {
        "en": (
            "ftc", "cfpb", "ombudsman", "bbb", "better business bureau", "accc", "asic", "ofcom", "ofgem",
            "trading standards", "attorney general", "consumer protection", "fca", "faa", "dot complaint",
            "regulator*", "file a complaint with", "reported you to",
        ),
        "zh": (
            "12315", "消协", "消费者协会", "举报", "投诉", "工商", "市场监管", "黑猫投诉", "银保监", "315",
        ),
        "ja": (
            "消費者センター", "消費生活センター", "国民生活センター", "消費者庁", "行政指導", "通報",
        ),
        "ru": (
            "роспотребнадзор*", "прокуратур*", "центробанк*", "цб рф", "фас",
        ),
    },
    triage_pb2.RISK_FLAG_SAFETY: {
        "en": (
            "injur*", "hurt", "burn*", "fire", "caught fire", "smoke", "smoking", "overheat*", "explod*",
            "food poisoning", "poisoned", "sick after", "vomit*", "hospital*", "allergic", "allergy", "odd smell",
            "smells weird", "smells like chemicals", "shock*", "unsafe", "dangerous", "glass in", "metal in",
        ),
        "zh": (
            "受伤", "起火", "着火", "冒烟", "爆炸", "自燃", "食物中毒", "中毒", "异味", "过敏", "住院", "烫伤",
            "漏电", "异物", "呕吐",
        ),
        "ja": (
            "発火", "火事", "煙", "爆発", "食中毒", "異臭", "怪我", "けが", "やけど", "火傷", "アレルギー", "入院",
            "異物", "吐き気", "感電", "過熱",
        ),
        "ru": (
            "травм*", "пожар*", "возгоран*", "загорел*", "дым*", "взорв*", "взрыв*", "отравлен*", "отравил*",
            "аллерги*", "больниц*", "ожог*", "странный запах", "перегрев*", "током",
        ),
    },
    triage_pb2.RISK_FLAG_MEDIA: {
        "en": (
            "journalist*", "reporter*", "the press", "the news", "going viral", "gone viral", "news outlet*",
            "tv station", "consumer show", "media",
        ),
        "zh": (
            "媒体", "曝光", "记者", "上热搜", "新闻",
        ),
        "ja": (
            "マスコミ", "記者", "報道", "炎上", "拡散", "テレビ局",
        ),
        "ru": (
            "сми", "журналист*", "телевидени*", "огласк*",
        ),
    },
    triage_pb2.RISK_FLAG_CHURN: {
        "en": (
            "switching to", "switch to", "cancel my", "cancelling my", "canceling my", "closing my account",
            "close my account", "never again", "never flying", "never ordering", "taking my business", "moving to",
            "done with", "last time i",
        ),
        "zh": (
            "销户", "换一家", "再也不", "不再用", "退订", "注销",
        ),
        "ja": (
            "解約", "乗り換え", "二度と", "もう使わない", "退会",
        ),
        "ru": (
            "уйду к", "перейду", "расторг*", "закрою счет", "закрою счёт", "больше никогда", "отключусь",
        ),
    },
    triage_pb2.RISK_FLAG_HIERARCHICAL_REQUEST: {
        "en": (
            "manager", "supervisor", "escalate", "someone in charge", "higher up", "your ceo", "head of customer",
        ),
        "zh": (
            "经理", "主管", "负责人", "领导", "上级",
        ),
        "ja": (
            "責任者", "上司", "上の人", "店長", "社長",
        ),
        "ru": (
            "руководител*", "начальник*", "менеджер*", "директор*", "старш*",
        ),
    },
}

# Words of grievance: the expectation-versus-reality mismatch that makes a complaint.
COMPLAINT_CUES: dict[str, tuple[str, ...]] = {
        "en": (
            "charged twice", "double charged", "overcharg*", "refund*", "never arrived", "never received",
            "still waiting", "still no", "not working", "doesn't work", "does not work", "stopped working", "broken",
            "broke", "damaged", "lost my", "lost luggage", "delayed", "cancelled", "canceled", "no response",
            "no reply", "ignored", "ignoring", "worst", "terrible", "awful", "horrible", "useless", "unacceptable",
            "ridiculous", "disgusting", "scam*", "rip off", "ripoff", "fraud*", "disappointed", "frustrat*", "angry",
            "furious", "fed up", "rude", "hours on hold", "on hold", "days without", "outage", "down again", "crash*",
            "locked out", "frozen", "declined", "stuck", "missing", "wrong", "shame on", "how is this", "why is it",
            "what a joke", "thanks for nothing", "nobody", "no one", "won't", "wont", "can't", "cannot", "keeps",
            "again", "tastes odd", "tastes weird", "tastes off", "smells off", "error", "lost", "fees", "hidden fee*",
            "no signal", "failed", "fail*", "mess", "poor", "pathetic", "joke", "sick", "hidden charge*", "garbage",
            "trash", "unusable", "charged me", "charging me", "locked me out", "bumped", "no incident", "deleted my",
            "closed my", "cracked", "soaked", "didn't", "wasn't", "isn't", "haven't", "hasn't", "not paid",
            "nothing like", "throttled", "suspended", "silently", "dropped", "shrink*", "fewer", "tastes",
            "taste like", "weirdly", "aftertaste", "mush", "shrugged", "left my package", "nothing arrived",
            "marked as delivered", "breaks", "double", "explain", "take a look", "where is my", "where's my",
            "please fix", "fix this", "sort this out", "clowns", "bold move", "very brave", "for the memories", "🙃",
            "weeks", "days", "hours", "month", "502*", "500s", "fee",
        ),
        "zh": (
            "退款", "退钱", "坑", "垃圾", "太差", "差劲", "没收到", "没有收到", "不退", "骗", "故障", "坏了", "破损",
            "延误", "取消", "丢失", "客服", "不回复", "没人管", "无语", "失望", "扣费", "乱收费", "重复扣款", "投诉",
            "维权", "气死", "太慢", "卡住", "无法", "不能用", "问题", "难吃", "味道不对", "变味", "恶心", "欺骗",
            "霸王条款", "什么玩意", "差评", "生气", "愤怒", "不给", "拒绝", "冻结", "多扣", "扣了", "莫名其妙",
            "从来没", "退回", "取不出", "一分钱", "到底", "为什么", "还没", "至今", "几天", "催",
        ),
        "ja": (
            "返金", "届かない", "届いてない", "最悪", "壊れ", "破損", "不良", "対応が悪い", "対応がひどい",
            "繋がらない", "つながらない", "ひどい", "酷い", "遅延", "欠航", "紛失", "返事がない", "返信がない",
            "二重請求", "請求", "詐欺", "がっかり", "残念", "怒", "使えない", "ログインできない", "落ちて", "障害",
            "まずい", "味が変", "いつまで", "ふざけ", "不具合", "不誠実", "困って", "困る", "許せない", "無視",
            "できません", "できず", "ません", "消えた", "放置", "びしょ濡れ", "破れ", "エラー", "直して", "のみ",
            "だけ", "取れない", "（棒）", "二重", "待ち",
        ),
        "ru": (
            "верните деньги", "вернуть деньги", "возврат*", "не работает", "не работают", "ужасн*", "обман*",
            "мошенни*", "не пришл*", "не пришёл", "не пришел", "сломал*", "сломан*", "списали", "дважды", "хамств*",
            "хамят", "отвратительн*", "позор*", "безобразие", "кошмар*", "разочарован*", "задержк*", "задержал*",
            "отменили", "потеряли", "никто не", "не отвечают", "не отвечает", "игнорир*", "бесит", "достали",
            "невозможно", "худш*", "не могу", "заблокир*", "отвратит*", "жду уже", "до сих пор", "сбой", "сбои",
            "навязали", "невкусн*", "испорчен*", "претензи*", "жалоб*", "где мой", "где моя", "не обновляется",
            "шаблон*", "промок*", "потерял*", "🙃", "уже", "почему", "снова", "опять", "без предупреждения", "нельзя",
        ),
    }

# Signs of noise: praise, questions, news, ads, job posts.
NOISE_CUES: dict[str, tuple[str, ...]] = {
        "en": (
            "love", "loving", "thank you", "thanks to", "great job", "amazing", "awesome", "kudos", "shoutout",
            "shout out", "well done", "impressed", "recommend", "best", "no complaints", "hiring", "we're hiring",
            "job opening", "apply now", "careers", "promo code", "discount", "% off", "use code", "giveaway", "sale",
            "announces", "announced", "launch*", "reports", "earnings", "quarter", "partnership", "press release",
            "does anyone know", "anyone know", "how do i", "how do you", "is it possible", "question:", "tips",
            "smooth", "quick", "fast delivery", "on time", "new feature", "webinar", "meetup", "guidance", "study",
            "survey", "podcast", "meme", "lol", "haha", "congrat*", "happy", "excited", "finally got", "works great",
            "beautiful", "delicious", "perfect", "helpful", "friendly", "pleasant", "win a", "free",
        ),
        "zh": (
            "点赞", "好评", "推荐", "喜欢", "感谢", "谢谢", "招聘", "诚聘", "优惠", "折扣", "促销", "活动", "发布",
            "宣布", "财报", "合作", "请问", "有人知道", "求问", "怎么", "好吃", "不错", "满意", "给力", "哈哈",
            "转发抽奖", "新品", "上线", "很快", "准时", "贴心", "棒",
        ),
        "ja": (
            "ありがとう", "感謝", "最高", "おすすめ", "好き", "素晴らしい", "助かり", "募集", "求人", "キャンペーン",
            "割引", "セール", "クーポン", "発表", "決算", "提携", "新商品", "教えて", "質問", "ですか", "でしょうか",
            "美味しい", "おいしい", "快適", "丁寧", "笑", "楽しみ", "便利",
        ),
        "ru": (
            "спасибо", "благодар*", "отличн*", "рекоменд*", "нравится", "люблю", "класс", "ваканси*", "требуются",
            "скидк*", "акци*", "промокод*", "распродаж*", "объявил*", "отчет*", "отчёт*", "выручк*", "партнерств*",
            "подскажите", "кто знает", "как ", "вопрос", "вкусн*", "быстро", "удобн*", "молодц*", "запуск*",
            "новинк*", "розыгрыш*",
        ),
    }
# fmt: on
