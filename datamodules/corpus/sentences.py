"""Sentence generators for the embedded corpus: our own word lists and templates.

English uses letters, spaces and , . ? ! only (no digits, hyphens or apostrophes: the
Seed-TTS-Eval protocol does no number normalisation and strips punctuation). Chinese uses the
simplified characters of the lists below plus ，。？！. Numbers are spelled out as words.
Every generator takes a `random.Random`, so a seed fixes the sentences.
"""
from __future__ import annotations

import random

EN_PUNCT = set(",.?! ")
ZH_PUNCT = set("，。？！")

# --------------------------------------------------------------------------- English
EN_NAMES = """Anna Peter Maria James Laura Daniel Emma Oliver Sophie Henry Alice Thomas Grace
Samuel Clara Victor Helen Martin Julia Oscar Nora Simon Ruby Felix Irene Leo Paula Hugo Vera
Adam""".split()

EN_PLACES = """London Paris Boston Madrid Berlin Tokyo Dublin Chicago Vienna Seattle Lisbon
Denver Oslo Sydney Toronto Rome Prague Cairo Athens Glasgow""".split()

EN_NOUNS = """apple book chair table garden window letter bottle camera pencil basket bridge
candle carpet castle cloud coffee engine farmer forest guitar hammer island jacket kitchen
ladder lemon market mirror needle orange painter pillow planet pocket rabbit river rocket
sandwich shadow sister soldier spoon station student teacher ticket tiger tomato tower train
valley violin wagon wallet whistle window yellow bicycle blanket doctor dragon flower
horse kettle lamp map monkey ocean parrot piano ribbon salad shoe spider stone sugar sweater
tunnel umbrella village wheel clock cookie""".split()
EN_NOUNS = sorted(set(EN_NOUNS) - {"yellow"})

# (base, past) of transitive verbs; the third person is derived by rule.
EN_VERBS = [("paint", "painted"), ("clean", "cleaned"), ("carry", "carried"), ("find", "found"),
            ("open", "opened"), ("close", "closed"), ("bring", "brought"), ("sell", "sold"),
            ("buy", "bought"), ("borrow", "borrowed"), ("fix", "fixed"), ("watch", "watched"),
            ("draw", "drew"), ("push", "pushed"), ("pull", "pulled"), ("wash", "washed"),
            ("hide", "hid"), ("lose", "lost"), ("keep", "kept"), ("move", "moved"),
            ("build", "built"), ("catch", "caught"), ("throw", "threw"), ("hold", "held"),
            ("visit", "visited"), ("follow", "followed"), ("describe", "described"),
            ("remember", "remembered"), ("forget", "forgot"), ("cook", "cooked")]

EN_MOTION = ["walked", "drove", "travelled", "flew", "returned", "moved", "cycled", "sailed"]

EN_ADJS = """old new small large quiet happy green blue bright heavy gentle clever strange
famous wooden golden simple lovely narrow broad empty busy cheerful careful ancient modern
silver purple warm cold soft tiny huge rusty shiny dusty sleepy noisy brave""".split()

EN_TIMES = ["yesterday", "today", "last night", "this morning", "on Monday", "on Friday",
            "every evening", "last summer", "after lunch", "before dinner", "at noon",
            "next week", "in the spring", "on Sunday afternoon"]

EN_RELATIVES = ["brother", "sister", "uncle", "aunt", "cousin", "neighbour", "friend",
                "grandmother", "teacher", "mother", "father"]

EN_WEATHER = ["sunny", "rainy", "windy", "cloudy", "foggy", "cold", "warm"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def en_number(n: int) -> str:
    """0..999 as English words, spaces only ('three hundred and twelve')."""
    if not 0 <= n < 1000:
        raise ValueError(f"en_number handles 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + en_number(rest))


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x", "o")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _third(verb: str) -> str:
    return _plural(verb)  # the same spelling rule: watches, carries, paints


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def english_sentence(rng: random.Random) -> str:
    c = rng.choice
    name, name2 = rng.sample(EN_NAMES, 2)
    noun, noun2 = rng.sample(EN_NOUNS, 2)
    adj, adj2 = rng.sample(EN_ADJS, 2)
    base, past = c(EN_VERBS)
    num = en_number(rng.randint(2, 99) if rng.random() < 0.85 else rng.randint(100, 999))
    place, time, rel = c(EN_PLACES), c(EN_TIMES), c(EN_RELATIVES)
    templates = [
        lambda: f"{name} {past} the {adj} {noun} in {place}.",
        lambda: f"The {adj} {noun} {_third(base)} {_a(noun2)} every day.",
        lambda: f"Did {name} {base} the {noun} {time}?",
        lambda: f"We saw {num} {adj} {_plural(noun)} {time}.",
        lambda: f"{name} and {name2} {c(EN_MOTION)} to {place} {time}.",
        lambda: f"Please {base} the {adj} {noun} before {c(['lunch', 'dinner', 'noon'])}.",
        lambda: f"There are {num} {_plural(noun)} near the {noun2}.",
        lambda: f"How many {_plural(noun)} did {name} {base} {time}?",
        lambda: f"What {_a(adj)} {noun} you have, {name}!",
        lambda: f"{name} thinks the {noun} is {adj}, but {name2} says it is {adj2}.",
        lambda: f"My {rel} keeps {num} {_plural(noun)} in {place}.",
        lambda: f"If it is {c(EN_WEATHER)} {time}, we will {base} the {noun}.",
        lambda: f"{_cap(_a(adj))} {noun} is waiting for {name} at the {noun2}.",
        lambda: f"Where did you {base} the {adj} {noun}?",
        lambda: f"{name} {past} {_a(noun)}.",
        lambda: f"The {noun} from {place} costs {num} dollars.",
        lambda: f"{name} {past} the {adj} {noun} and the {adj2} {noun2} in {place} {time}.",
    ]
    return c(templates)()


# --------------------------------------------------------------------------- Chinese
# Only readings without the vowel u-umlaut (lv/nv), and no polyphones that pypinyin misreads
# in our templates (e.g. 长 as zhang3): the pinyin voice is given plain tone numbers.
# Nouns carry their measure word.
ZH_NAMES = ["小明", "小红", "王芳", "李雷", "张伟", "刘洋", "陈静", "赵磊", "孙丽", "周杰",
            "吴刚", "郑爽", "老王", "李老师", "张医生", "我妈妈", "我哥哥", "他的朋友"]

ZH_PLACES = ["北京", "上海", "学校", "公园", "图书馆", "超市", "医院", "火车站", "海边",
             "山上", "饭店", "办公室", "商店", "教室", "厨房", "花园", "广州", "西安"]

ZH_NOUNS = [("苹果", "个"), ("书", "本"), ("电脑", "台"), ("自行车", "辆"), ("衣服", "件"),
            ("花", "朵"), ("信", "封"), ("礼物", "份"), ("照片", "张"), ("雨伞", "把"),
            ("桌子", "张"), ("椅子", "把"), ("小猫", "只"), ("小狗", "只"), ("面包", "个"),
            ("鸡蛋", "个"), ("报纸", "份"), ("手机", "部"), ("钥匙", "把"), ("帽子", "顶"),
            ("鞋子", "双"), ("茶", "杯"), ("咖啡", "杯"), ("米饭", "碗"), ("西瓜", "个"),
            ("蛋糕", "块"), ("杯子", "个"), ("地图", "张"), ("汽车", "辆"), ("故事", "个")]

ZH_VERBS = ["买", "看", "喜欢", "找到", "带来", "拿走", "画", "修理", "打开", "送",
            "准备", "收到", "借", "洗", "放下", "选"]

ZH_ADJS = ["漂亮", "新", "旧", "大", "小", "好看", "便宜", "贵", "干净", "安静", "有名",
           "好吃", "重", "轻", "舒服", "可爱", "高", "甜", "特别", "简单"]

ZH_TIMES = ["今天", "昨天", "明天", "早上", "晚上", "下午", "周末", "上个月", "去年",
            "每天", "星期一", "星期五", "中午", "后天"]

ZH_WEATHER = ["很好", "不错", "很热", "很冷", "晴朗"]

_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int) -> str:
    """1..99 in Chinese characters (十, 十二, 二十, 二十三)."""
    if not 1 <= n < 100:
        raise ValueError(f"zh_number handles 1..99, got {n}")
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else _ZH_DIGITS[tens] + "十")
    return head + ("" if ones == 0 else _ZH_DIGITS[ones])


def _zh_count(n: int) -> str:
    return "两" if n == 2 else zh_number(n)  # 两 before a measure word


def chinese_sentence(rng: random.Random) -> str:
    c = rng.choice
    name, name2 = rng.sample(ZH_NAMES, 2)
    (noun, mw), (noun2, mw2) = rng.sample(ZH_NOUNS, 2)
    place, place2 = rng.sample(ZH_PLACES, 2)
    adj, verb, time = c(ZH_ADJS), c(ZH_VERBS), c(ZH_TIMES)
    num = _zh_count(rng.randint(2, 99) if rng.random() < 0.5 else rng.randint(2, 9))
    templates = [
        lambda: f"{name}{time}在{place}{verb}了{num}{mw}{noun}。",
        lambda: f"{time}{name}和{name2}一起去{place}。",
        lambda: f"你{time}想和{name}去{place}吗？",
        lambda: f"{place}的这{mw}{noun}非常{adj}，我很喜欢。",
        lambda: f"{name}说{place}的{noun}很{adj}。",
        lambda: f"我们{time}要在{place}{verb}{noun}。",
        lambda: f"{name}为什么{time}不去{place}？",
        lambda: f"{place}里有{num}{mw}{adj}的{noun}。",
        lambda: f"请把{noun}放在{noun2}旁边，谢谢！",
        lambda: f"天气{c(ZH_WEATHER)}的时候，{name}喜欢去{place}。",
        lambda: f"这{mw}{noun}真{adj}！",
        lambda: f"{name}从{place}到{place2}走了{_zh_count(rng.randint(2, 60))}分钟。",
        lambda: f"{name}{time}给{name2}{verb}了一{mw2}{noun2}。",
        lambda: f"{noun}多少钱？{num}块。",
    ]
    return c(templates)()


# --------------------------------------------------------------------------- hard cases
# In the spirit of Seed-TTS-Eval's hard set: repeated words, tongue-twister patterns, long sentences.
HARD_KINDS = ("repeat", "twister", "long")


def _initial_groups() -> dict[str, tuple[list, list, list, list]]:
    """letter -> (names, past verbs, adjectives, nouns) starting with it, where each list has one."""
    out = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        groups = ([n for n in EN_NAMES if n[0].lower() == letter], [p for _, p in EN_VERBS if p[0] == letter],
                  [a for a in EN_ADJS if a[0] == letter], [n for n in EN_NOUNS if n[0] == letter])
        if all(groups):
            out[letter] = groups
    return out


def english_hard_sentence(rng: random.Random, kind: str) -> str:
    c = rng.choice
    name, name2 = rng.sample(EN_NAMES, 2)
    noun, noun2 = rng.sample(EN_NOUNS, 2)
    adj, adj2 = rng.sample(EN_ADJS, 2)
    base, past = c(EN_VERBS)
    if kind == "repeat":
        return c([lambda: f"{name} said {noun}, {noun}, {noun}, and then {noun} again.",
                  lambda: f"The {adj}, {adj}, {adj} {noun} {past} the {noun2} {time_word(rng)}.",
                  lambda: f"{_cap(_plural(noun))} and {_plural(noun)} and {_plural(noun)}, {name} {past} {_plural(noun)}."])()
    if kind == "twister":
        names, verbs, adjs, nouns = c(list(_initial_groups().values()))
        return (f"{c(names)} {c(verbs)} {c(adjs)} {_plural(c(nouns))}, and {c(names)} {c(verbs)} "
                f"{c(adjs)} {_plural(c(nouns))}, {c(adjs)} {_plural(c(nouns))} and {c(adjs)} {_plural(c(nouns))}.")
    if kind == "long":
        place, place2 = rng.sample(EN_PLACES, 2)
        return (f"{name} {past} the {adj} {noun} in {place} {time_word(rng)}, and {name2} {c(EN_MOTION)} to "
                f"{place2} with {_a(adj2)} {noun2}, because my {c(EN_RELATIVES)} thinks it is "
                f"{c(EN_WEATHER)} there {time_word(rng)}.")
    raise ValueError(f"unknown hard-case kind {kind!r} (expected one of {HARD_KINDS})")


def time_word(rng: random.Random) -> str:
    return rng.choice(EN_TIMES)


def chinese_hard_sentence(rng: random.Random, kind: str) -> str:
    c = rng.choice
    name, name2 = rng.sample(ZH_NAMES, 2)
    (noun, mw), (noun2, _) = rng.sample(ZH_NOUNS, 2)
    place, place2 = rng.sample(ZH_PLACES, 2)
    if kind == "repeat":
        return c([lambda: f"{name}说{noun}，{noun}，{noun}，又是{noun}。",
                  lambda: f"{place}{place}{place}，{name}{c(ZH_TIMES)}去{place}。"])()
    if kind == "twister":  # the pattern of 四是四，十是十，十四不是四十
        a, b = rng.sample(range(1, 10), 2)
        x, y = _ZH_DIGITS[a], _ZH_DIGITS[b]
        return f"{x}是{x}，{y}是{y}，{x}{y}不是{y}{x}，{y}{x}也不是{x}{y}。"
    if kind == "long":
        return (f"{name}{c(ZH_TIMES)}在{place}{c(ZH_VERBS)}了{_zh_count(rng.randint(2, 9))}{mw}{c(ZH_ADJS)}的{noun}，"
                f"然后和{name2}一起去{place2}，{name2}说{place2}的{noun2}很{c(ZH_ADJS)}。")
    raise ValueError(f"unknown hard-case kind {kind!r} (expected one of {HARD_KINDS})")


def hard_sentence(lang: str, rng: random.Random, kind: str) -> str:
    if lang == "en":
        return english_hard_sentence(rng, kind)
    if lang == "zh":
        return chinese_hard_sentence(rng, kind)
    raise ValueError(f"unknown language {lang!r} (expected 'en' or 'zh')")


def sentence(lang: str, rng: random.Random) -> str:
    if lang == "en":
        return english_sentence(rng)
    if lang == "zh":
        return chinese_sentence(rng)
    raise ValueError(f"unknown language {lang!r} (expected 'en' or 'zh')")


def allowed_chars(lang: str) -> set[str]:
    """The characters a generated sentence of `lang` may use."""
    if lang == "en":
        words = (EN_NAMES + EN_PLACES + EN_NOUNS + EN_ADJS + EN_TIMES + EN_RELATIVES
                 + EN_WEATHER + EN_MOTION + [w for pair in EN_VERBS for w in pair])
        words += ["said", "then", "again", "because", "my", "thinks", "there", "with"]  # the hard cases' glue
        return set("".join(words).lower() + "".join(words).upper()) | EN_PUNCT
    if lang == "zh":
        words = (ZH_NAMES + ZH_PLACES + ZH_VERBS + ZH_ADJS + ZH_TIMES + ZH_WEATHER
                 + [w for pair in ZH_NOUNS for w in pair] + list(_ZH_DIGITS + "十两"))
        # the template glue characters
        glue = "在了和一起去你想吗的这非常我很喜欢说们要为什么不里有请把放旁边谢天气时候真从到走分钟给多少钱块" + "又是也然后"
        return set("".join(words) + glue) | ZH_PUNCT
    raise ValueError(f"unknown language {lang!r}")
