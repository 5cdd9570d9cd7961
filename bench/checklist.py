"""Behavioural tests in the spirit of CheckList (Ribeiro et al. 2020, "Beyond Accuracy: Behavioral
Testing of NLP Models with CheckList"): templated Chinese sentences, one capability each, written here
and never trained on.

Minimum-functionality tests (MFT) give each sentence its polarity; invariance tests (INV) change a
sentence in a way that should not change the prediction (punctuation, an emoji of the same
sentiment, a common typo) and count a flip as a failure. ``failure_rates(positive_probability)`` runs
them all for any model given as a function from texts to P(positive).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

POS, NEG = 1, 0

# (domain, its noun phrase, praise, complaint): one plain sentence pair per domain.
DOMAINS = [
    ("酒店", "这家酒店", ["房间干净，服务热情", "位置很好，早餐丰富"], ["房间又脏又小", "服务态度很差"]),
    ("书籍", "这本书", ["内容很精彩，值得一读", "写得很好，受益匪浅"], ["内容空洞，浪费时间", "印刷太差，错字很多"]),
    ("手机", "这款手机", ["运行流畅，拍照清晰", "续航很好，用着顺手"], ["经常死机，发热严重", "信号很差，电池不耐用"]),
    ("电脑", "这台电脑", ["速度很快，屏幕清楚", "做工精致，散热很好"], ["开机很慢，风扇太吵", "用了一周就蓝屏"]),
    ("水果", "这箱水果", ["新鲜又甜，个头很大", "汁多味甜，很好吃"], ["烂了一半，很不新鲜", "又酸又涩，难吃"]),
    ("衣服", "这件衣服", ["面料舒服，版型好看", "做工细致，穿着合身"], ["掉色严重，线头很多", "质量太差，穿一次就起球"]),
    ("洗发水", "这瓶洗发水", ["味道清香，洗完很顺滑", "去屑效果很好"], ["洗完头皮发痒", "味道刺鼻，用着不舒服"]),
    ("牛奶", "这箱牛奶", ["口感醇厚，孩子爱喝", "很新鲜，味道不错"], ["喝着有股怪味", "快过期了才发货"]),
    ("热水器", "这台热水器", ["出水很快，安装师傅专业", "加热快，很省电"], ["用了一个月就漏水", "水温忽冷忽热"]),
    ("平板", "这个平板", ["屏幕清晰，反应灵敏", "很轻薄，看视频很爽"], ["充电很慢，经常卡顿", "屏幕有坏点，很失望"]),
]
POS_WORDS = ["好", "满意", "喜欢", "推荐", "值"]
NEG_WORDS = ["差", "失望", "后悔", "糟糕", "坑"]
INTENSIFIERS = ["非常", "特别", "超级", "十分", "太"]


def _plain() -> list[tuple[str, int]]:
    out = []
    for _, noun, praise, complaint in DOMAINS:
        out += [(f"{noun}{p}。", POS) for p in praise] + [(f"{noun}{c}。", NEG) for c in complaint]
        out += [(f"{noun}很好，推荐购买！", POS), (f"{noun}很差，不推荐购买！", NEG)]
    return out


def _negation() -> list[tuple[str, int]]:
    """不/没 negating praise: the sentence turns negative."""
    out = []
    for _, noun, _, _ in DOMAINS:
        out += [(f"{noun}不好。", NEG), (f"{noun}一点也不好用。", NEG), (f"我不喜欢{noun}。", NEG),
                (f"{noun}没有想象中好。", NEG), (f"对{noun}不太满意。", NEG)]
    return out


def _double_negation() -> list[tuple[str, int]]:
    out = []
    for _, noun, _, _ in DOMAINS:
        out += [(f"{noun}不能说不好，挺满意的。", POS), (f"{noun}没有什么不满意的地方。", POS),
                (f"不得不说{noun}真的不错。", POS)]
    return out


def _contrast() -> list[tuple[str, int]]:
    """虽然 A，但是 B / A，可惜 B: the sentence follows B."""
    out = []
    for _, noun, praise, complaint in DOMAINS:
        out += [(f"虽然{noun}价格便宜，但是{complaint[0]}。", NEG), (f"虽然物流慢了点，但是{noun}{praise[0]}。", POS),
                (f"{noun}{praise[1]}，可惜{complaint[1]}。", NEG), (f"虽然包装简单，但{noun}{praise[1]}。", POS)]
    return out


def _intensity() -> list[tuple[str, int]]:
    out = []
    for (_, noun, _, _), adverb in itertools.product(DOMAINS, INTENSIFIERS):
        out += [(f"{noun}{adverb}好了！", POS), (f"{noun}{adverb}差了！", NEG)]
    return out


MFT = {"plain praise/complaint (10 domains)": _plain, "negation 不/没": _negation,
       "double negation": _double_negation, "contrast 虽然…但是/可惜": _contrast, "intensity 非常/太": _intensity}

# Invariance: (perturbation name, function of a sentence and its polarity).
TYPOS = {"的": "地", "很": "狠", "再": "在", "做": "作", "已": "以"}


def _typo(text: str, _: int) -> str:
    for right, wrong in TYPOS.items():
        if right in text:
            return text.replace(right, wrong, 1)
    return text + "了"


INV = {"punctuation ！！！ / 。": lambda t, _: t.rstrip("。！") + "！！！",
       "emoji of the same sentiment": lambda t, y: t + ("👍😊" if y == POS else "👎😡"),
       "typo (的→地, 很→狠, 再→在 …)": _typo}


def failure_rates(positive_probability: Callable[[list[str]], np.ndarray]) -> dict[str, tuple[float, int]]:
    """Per capability: (failure rate, number of cases)."""
    out = {}
    for name, make in MFT.items():
        cases = make()
        p = positive_probability([t for t, _ in cases])
        predicted = (np.asarray(p) >= 0.5).astype(int)
        out[name] = (float(np.mean(predicted != np.array([y for _, y in cases]))), len(cases))
    base = _plain()
    p_base = np.asarray(positive_probability([t for t, _ in base])) >= 0.5
    for name, perturb in INV.items():
        changed = [perturb(t, y) for t, y in base]
        p_changed = np.asarray(positive_probability(changed)) >= 0.5
        out[f"INV: {name}"] = (float(np.mean(p_changed != p_base)), len(base))
    return out
